// Simulated hosts made of Linux network namespaces: a "switch" namespace holding a
// bridge, and one namespace per host wired to it by a veth pair, with 10.213.1.<i>/24 on
// eth0. Nothing is created in the caller's namespace, so no existing interface is
// touched. Names carry a per-run prefix (cfx<pid>). Everything is removed by the
// destructor, by atexit and by a signal handler (SIGINT/SIGTERM/SIGABRT/SIGSEGV), which
// also kills the processes registered with track(). Needs root and iproute2.
// Used by `cafex chaos` (cluster.hosts) and the multi-node tests.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

namespace cafex {

class netns_hosts {
public:
  /// Creates `n` hosts; throws std::runtime_error with the failing command's output.
  explicit netns_hosts(int n);
  ~netns_hosts();
  netns_hosts(const netns_hosts&) = delete;
  netns_hosts& operator=(const netns_hosts&) = delete;

  int size() const { return static_cast<int>(names_.size()); }
  const std::string& ns(int i) const { return names_[static_cast<size_t>(i)]; }
  std::string ip(int i) const { return "10.213.1." + std::to_string(i + 1); }

  /// argv prefixed with `ip netns exec <ns(i)>`.
  std::vector<std::string> exec_in(int i, std::vector<std::string> argv) const;

  /// Takes host i's link to the switch down (false) or up (true): a cut cable.
  /// Throws std::runtime_error when `ip` fails.
  void set_link(int i, bool up) const;

  /// Moves the calling thread into host i's namespace (threads started later inherit
  /// it): call before any other thread starts. Throws std::runtime_error on failure.
  void enter(int i) const;

  /// Kills `pid` (SIGKILL) on cleanup, even from a signal handler.
  void track(pid_t pid);

  /// Kills tracked processes and deletes the namespaces. Idempotent.
  void cleanup();

private:
  std::vector<std::string> names_;
  std::string switch_;
};

/// True when this process may create network namespaces (effective uid 0).
bool can_create_netns();

} // namespace cafex
