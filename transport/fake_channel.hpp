// An in-process channel pair for tests: bytes go through a queue; a test can make the
// next operations fail or drop sends.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "transport/channel.hpp"

namespace cafex {

class fake_channel_pair {
public:
  explicit fake_channel_pair(std::chrono::milliseconds deadline = std::chrono::seconds(10));
  /// The upstream (sending) and downstream (receiving) ends; they share this pair.
  std::unique_ptr<p2p_channel> upstream();
  std::unique_ptr<p2p_channel> downstream();
  /// The next `n` operations (either side) fail with transport_failed.
  void fail_next(int n);
  size_t sends() const;

private:
  class end;
  friend class end;
  caf::error push(const void* data, size_t bytes, uint64_t tag);
  caf::error pop(void* data, size_t bytes, uint64_t tag);
  bool take_failure();
  std::chrono::milliseconds deadline_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<uint64_t, std::vector<char>> queue_;
  int fail_next_ = 0;
  size_t sends_ = 0;
};

} // namespace cafex
