// An in-process fake TP group for tests, Ray-style: N `collective` endpoints that
// rendezvous on threads of one process, with switches that let a test decide whether a
// collective succeeds, fails or times out.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/models/collective.hpp"

namespace cafex {

/// A TP group of `size` ranks living in one process. Rank i's endpoint is `endpoint(i)`;
/// each rank calls from its own thread. The k-th call of every rank forms round k: the
/// ranks sum their buffers and all get the same result. A round whose ranks do not all
/// arrive within the deadline fails with errc::timeout instead of hanging.
class fake_collective_group {
public:
  explicit fake_collective_group(int size,
                                 std::chrono::milliseconds deadline = std::chrono::seconds{
                                   10});
  ~fake_collective_group();

  fake_collective_group(const fake_collective_group&) = delete;
  fake_collective_group& operator=(const fake_collective_group&) = delete;

  int size() const { return static_cast<int>(endpoints_.size()); }

  /// Rank `rank`'s collective; lives as long as the group.
  collective& endpoint(int rank);

  /// How long a rank waits for the others in one round (default 10 s).
  void set_deadline(std::chrono::milliseconds deadline);

  /// The next `count` rounds fail with errc::transport_failed on every rank (decided when
  /// a round's first rank arrives, so all ranks of a round agree).
  void fail_next(int count);

  /// While on, every round fails with errc::transport_failed.
  void error_on_collective(bool on);

  /// all_reduce_sum calls made so far, all ranks together.
  uint64_t calls() const;

private:
  class endpoint_impl;
  friend class endpoint_impl;

  struct round {
    bool fail = false;   ///< injected failure
    bool broken = false; ///< a rank timed out or sent a different length
    size_t count = 0;
    bool f32 = false;
    std::vector<int64_t> sum;
    std::vector<std::vector<float>> parts; ///< f32: each rank's input, summed in rank order
    std::vector<float> fsum;
    int arrived = 0;
    int left = 0;
  };

  /// One round: int64 `data` or float32 `fdata` (the other is null).
  caf::error all_reduce(int rank, int64_t* data, float* fdata, size_t count);
  void leave(uint64_t index, round& r);

  mutable std::mutex mx_;
  std::condition_variable cv_;
  std::chrono::milliseconds deadline_;
  int fail_next_ = 0;
  bool error_on_ = false;
  uint64_t calls_ = 0;
  std::vector<uint64_t> next_round_; ///< per rank: index of its next round
  std::map<uint64_t, round> rounds_;
  std::vector<std::unique_ptr<endpoint_impl>> endpoints_;
};

} // namespace cafex
