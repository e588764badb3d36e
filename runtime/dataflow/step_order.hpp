// Driver-side bookkeeping of pipelined steps, free of actors: how many steps are in
// flight against max_concurrent_batches, and handing results back in step order even
// when a later step finishes first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace cafex {

/// Admission of steps into the pipeline.
class step_window {
public:
  explicit step_window(size_t max_in_flight) : max_(max_in_flight < 1 ? 1 : max_in_flight) {}
  bool can_dispatch() const { return in_flight_ < max_; }
  /// Takes a slot; returns the step's sequence number (0, 1, 2, ...).
  uint64_t dispatch() {
    ++in_flight_;
    if (in_flight_ > max_seen_)
      max_seen_ = in_flight_;
    return next_seq_++;
  }
  /// Frees a slot (a step finished or failed).
  void complete() {
    if (in_flight_ > 0)
      --in_flight_;
  }
  size_t in_flight() const { return in_flight_; }
  size_t max_in_flight() const { return max_; }
  size_t max_observed() const { return max_seen_; }
  uint64_t next_seq() const { return next_seq_; }

private:
  size_t max_;
  size_t in_flight_ = 0;
  size_t max_seen_ = 0;
  uint64_t next_seq_ = 0;
};

/// Results keyed by sequence number, released strictly in order.
template <class T>
class in_order_buffer {
public:
  explicit in_order_buffer(uint64_t first = 0) : next_(first) {}
  void put(uint64_t seq, T value) { done_.emplace(seq, std::move(value)); }
  /// Every result whose predecessors were all released, in order.
  std::vector<std::pair<uint64_t, T>> pop_ready() {
    std::vector<std::pair<uint64_t, T>> out;
    for (auto i = done_.find(next_); i != done_.end(); i = done_.find(next_)) {
      out.emplace_back(i->first, std::move(i->second));
      done_.erase(i);
      ++next_;
    }
    return out;
  }
  /// Skips to `seq` (after a teardown dropped earlier steps).
  void reset(uint64_t seq) {
    next_ = seq;
    done_.clear();
  }
  size_t waiting() const { return done_.size(); }
  uint64_t next() const { return next_; }

private:
  uint64_t next_;
  std::map<uint64_t, T> done_;
};

} // namespace cafex
