#include "runtime/os/signals.hpp"

#include <csignal>

namespace cafex {

void ignore_sigpipe() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, nullptr);
}

bool sigpipe_ignored() {
  struct sigaction sa = {};
  return sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

} // namespace cafex
