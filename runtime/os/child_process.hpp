// A child process owned by RAII: started with fork/exec, reaped without blocking, and
// killed (SIGTERM, then SIGKILL after a grace period) when its owner lets go of it.
// The child also gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the thread that spawned
// it even when the parent is SIGKILLed and has no chance to clean up.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include <caf/expected.hpp>

namespace cafex {

/// How a child ended.
struct exit_status {
  bool signaled = false;
  int code = 0;                 ///< exit code, or the signal number when `signaled`
  std::string describe() const; ///< "exit code 3" / "signal 9 (Killed)"
};

/// This program's own path (/proc/self/exe): the default worker program, since the
/// `cafex` binary (or a host program calling worker_main) is its own worker.
std::string self_executable();

class child_process {
public:
  child_process() = default;
  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process();

  /// Starts `argv[0]` with `argv` and the parent's environment plus `extra_env`. The
  /// child inherits `inherit[i]` as descriptor 3 + i (e.g. a socketpair end) and no other
  /// descriptor of the parent beyond 0-2 that is close-on-exec.
  static caf::expected<child_process>
  spawn(const std::vector<std::string>& argv,
        const std::map<std::string, std::string>& extra_env = {},
        const std::vector<int>& inherit = {});

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }

  /// Reaps the child if it has ended; never blocks.
  std::optional<exit_status> try_wait();

  /// Sends `sig` if the child still runs.
  void signal(int sig);

  /// SIGTERM, wait up to `grace`, then SIGKILL and reap. Returns how it ended.
  exit_status terminate(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

private:
  pid_t pid_ = -1;
  std::optional<exit_status> status_;
};

} // namespace cafex
