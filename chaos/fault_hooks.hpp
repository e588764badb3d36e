// Fault injection on a worker's step path (`cafex chaos`): a small object the worker's
// stage consults before every step. Off unless a fault.* method armed it; atomics, because
// methods (actor thread) arm it while the hot loop's thread runs steps.
#pragma once

#include <atomic>
#include <chrono>
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

private:
  std::atomic<int> delay_ms_{0};
  std::atomic<int> delay_steps_{0};
};

} // namespace cafex
