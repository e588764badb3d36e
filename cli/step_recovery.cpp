#include "cli/step_recovery.hpp"

#include <algorithm>
#include <thread>

#include "runtime/error.hpp"

namespace cafex::cli {

bool recoverable(const caf::error& err) {
  auto c = code_of(err);
  return c == errc::worker_lost || c == errc::transport_failed || c == errc::not_ready;
}

bool wait_ready(executor& ex, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(2);
  while (std::chrono::steady_clock::now() < until) {
    auto st = ex.state();
    if (st == executor_state::ready)
      return true;
    if (st == executor_state::failed || st == executor_state::stopped)
      return false;
    // Polling the driver's health with back-off: recovery takes tens of ms.
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
  return false;
}

} // namespace cafex::cli
