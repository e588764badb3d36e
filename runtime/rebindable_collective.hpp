// The TP group a worker hands its model runner: a stable object in front of the real
// collective, so that the communicator can be rebuilt (reinitialize_distributed, or
// recovery after a lost rank) without reloading the model, and so that failure
// injection (`cafex chaos`) can fail or slow a rank's collectives on purpose.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "runtime/collective.hpp"
#include "runtime/error.hpp"

namespace cafex {

class rebindable_collective final : public collective {
public:
  rebindable_collective() : inner_(std::make_unique<solo_collective>()) {}

  /// Replaces the communicator. The caller guarantees that no collective runs meanwhile
  /// (workers hold their runner mutex).
  void rebind(std::unique_ptr<collective> inner) {
    inner_ = inner ? std::move(inner) : std::make_unique<solo_collective>();
  }

  /// The next `n` all-reduces fail with errc::transport_failed without exchanging
  /// anything (the peers then fail too, by their own deadline or on the closed link).
  void inject_failures(int n) { fail_next_.store(n); }

  /// Every all-reduce first sleeps `ms` (0: none), for the next `count` calls.
  void inject_delay(int ms, int count) {
    delay_count_.store(count);
    delay_ms_.store(ms);
  }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }

  caf::error all_reduce_sum(int64_t* data, size_t count) override {
    if (take(fail_next_))
      return make_error(errc::transport_failed,
                        "TP all-reduce on rank " + std::to_string(inner_->rank())
                          + " failed on purpose (fault injection)");
    if (delay_ms_.load() > 0 && take(delay_count_))
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
    return inner_->all_reduce_sum(data, count);
  }

private:
  static bool take(std::atomic<int>& n) {
    int v = n.load();
    while (v > 0)
      if (n.compare_exchange_weak(v, v - 1))
        return true;
    return false;
  }

  std::unique_ptr<collective> inner_;
  std::atomic<int> fail_next_{0};
  std::atomic<int> delay_ms_{0};
  std::atomic<int> delay_count_{0};
};

} // namespace cafex
