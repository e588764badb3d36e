// Fault injection on a worker's step path (`cafex chaos`): a small object the worker's
// stage consults before every step, and its method dispatch before every method. Off
// unless a fault.* method armed it; atomics, because methods (actor thread) arm it while
// the hot loop's thread runs steps.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <string>
#include <thread>

namespace cafex {

class fault_hooks {
public:
  /// The next `steps` steps of this rank each wait `ms` before running.
  void delay_steps(int ms, int steps) {
    delay_ms_.store(ms);
    delay_steps_.store(steps);
  }

  /// Called by the stage before it runs a step: waits when a delay is armed.
  void before_step() {
    int ms = delay_ms_.load();
    if (ms <= 0)
      return;
    int n = delay_steps_.load();
    while (n > 0)
      if (delay_steps_.compare_exchange_weak(n, n - 1)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        return;
      }
  }

  int pending_delays() const { return delay_steps_.load(); }

  /// The next time this worker starts `method`, it crashes (SIGKILL to itself) before
  /// the method does anything: a loss at a chosen point of the lifecycle, e.g. inside a
  /// recovery's reinitialize_distributed, where no outside kill can be timed.
  void die_in(std::string method) {
    std::lock_guard<std::mutex> guard{die_mtx_};
    die_in_ = std::move(method);
  }

  /// Called before every worker method runs: dies when a crash in `method` is armed.
  void before_method(const std::string& method) {
    std::lock_guard<std::mutex> guard{die_mtx_};
    if (!die_in_.empty() && die_in_ == method)
      std::raise(SIGKILL);
  }

  /// This rank's next step that hands its output to a next stage crashes it (SIGKILL to
  /// itself) after its collectives, before the hand-off: its TP peer has sent its part,
  /// so the next stage's ranks disagree on which step they run (one waits for input that
  /// never comes, its TP peer waits in a collective for it).
  void die_before_forward() { die_before_forward_.store(true); }

  /// Called by the stage once a step's output is ready for the next stage.
  void before_forward() {
    if (die_before_forward_.load())
      std::raise(SIGKILL);
  }

private:
  std::atomic<bool> die_before_forward_{false};
  std::atomic<int> delay_ms_{0};
  std::atomic<int> delay_steps_{0};
  std::mutex die_mtx_;
  std::string die_in_; ///< empty: no crash armed
};

} // namespace cafex
