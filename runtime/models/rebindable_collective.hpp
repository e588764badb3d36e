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

#include "runtime/models/collective.hpp"
#include "runtime/error.hpp"

namespace cafex {

class rebindable_collective final : public collective {
public:
  rebindable_collective() : inner_(std::make_unique<solo_collective>()) {}

  /// Replaces the communicator. The caller guarantees that no collective runs meanwhile
  /// (workers hold their runner mutex).
  void rebind(std::unique_ptr<collective> inner) {
    inner_ = inner ? std::move(inner) : std::make_unique<solo_collective>();
    break_next_.store(false);
    closed_.clear();
  }

  /// Closes the communicator (its peers blocked in a collective with this rank fail at
  /// once); every later all-reduce fails, naming `why`, until rebind(). Same caller
  /// guarantee as rebind().
  void close(std::string why) {
    if (inner_) {
      rank_ = inner_->rank();
      size_ = inner_->size();
      inner_.reset();
    }
    closed_ = std::move(why);
  }

  /// Fault injection: the next all-reduce fails and the communicator is closed, as when a
  /// link of the group breaks (peers see the closed connection and fail too, at once).
  /// Every later all-reduce fails until rebind(): reinitialize_distributed rebuilds it.
  void inject_break() { break_next_.store(true); }

  /// Every all-reduce first sleeps `ms` (0: none), for the next `count` calls.
  void inject_delay(int ms, int count) {
    delay_count_.store(count);
    delay_ms_.store(ms);
  }

  int rank() const override { return inner_ ? inner_->rank() : rank_; }
  int size() const override { return inner_ ? inner_->size() : size_; }

  caf::error all_reduce_sum(int64_t* data, size_t count) override {
    if (auto err = usable())
      return err;
    return inner_->all_reduce_sum(data, count);
  }

  caf::error all_reduce_sum_f32(float* data, size_t count) override {
    if (auto err = usable())
      return err;
    return inner_->all_reduce_sum_f32(data, count);
  }

  caf::error all_gather(const void* in, void* out, size_t bytes) override {
    if (auto err = usable())
      return err;
    return inner_->all_gather(in, out, bytes);
  }

  caf::error broadcast(void* data, size_t bytes, int root) override {
    if (auto err = usable())
      return err;
    return inner_->broadcast(data, bytes, root);
  }

  buffer registered_buffer() override {
    return inner_ ? inner_->registered_buffer() : buffer{};
  }
  const char* transport() const override { return inner_ ? inner_->transport() : "closed"; }

private:
  /// Before every collective: the injected faults, and a closed or broken communicator.
  caf::error usable() {
    if (break_next_.exchange(false) && inner_) {
      rank_ = inner_->rank();
      size_ = inner_->size();
      inner_.reset();
    }
    if (!inner_ && !closed_.empty())
      return make_error(errc::transport_failed, "the TP communicator of group rank "
                                                  + std::to_string(rank_) + " is closed ("
                                                  + closed_
                                                  + "); reinitialize_distributed reopens it");
    if (!inner_)
      return make_error(
        errc::transport_failed,
        "the TP communicator of group rank " + std::to_string(rank_)
          + " is broken (fault injection); reinitialize_distributed rebuilds it");
    if (delay_ms_.load() > 0 && take(delay_count_))
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
    return caf::none;
  }

  static bool take(std::atomic<int>& n) {
    int v = n.load();
    while (v > 0)
      if (n.compare_exchange_weak(v, v - 1))
        return true;
    return false;
  }

  std::unique_ptr<collective> inner_;
  std::atomic<bool> break_next_{false};
  std::string closed_;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<int> delay_ms_{0};
  std::atomic<int> delay_count_{0};
};

} // namespace cafex
