// Deadlines of many pending calls behind one timer, free of actors. CAF 0.17 never
// cancels a delayed_send, and keeps a request's timeout in its clock until it fires
// even when the answer came long before: one timer per step lived for the whole step
// timeout (300 s) and grew a busy driver by about 0.45 KB a step. An actor keeps its
// deadlines here instead and has at most one timer message armed at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace cafex {

class deadline_queue {
public:
  using time_point = std::chrono::steady_clock::time_point; // caf::actor_clock's

  /// Call `key` is due at `due`. Returns when to arm the timer, if it must be armed now
  /// (none is armed, or the armed one fires later than `due`).
  std::optional<time_point> add(uint64_t key, time_point due) {
    due_[key] = due;
    if (armed_ && *armed_ <= due)
      return std::nullopt;
    armed_ = due;
    return due;
  }

  /// `key` was answered (unknown keys are ignored).
  void remove(uint64_t key) { due_.erase(key); }

  /// What a timer that fired brings: the calls now overdue, and the next timer to arm.
  struct expired {
    std::vector<uint64_t> keys;       ///< due by then, in key order (removed)
    std::optional<time_point> arm_at; ///< arm the timer for the earliest deadline left
  };

  /// The timer fired at `now` (a stale one, armed for a deadline since answered, is
  /// harmless: it fails nothing early and re-arms for what is left).
  expired expire(time_point now) {
    if (armed_ && *armed_ <= now)
      armed_.reset();
    expired out;
    std::optional<time_point> first;
    for (auto i = due_.begin(); i != due_.end();) {
      if (i->second <= now) {
        out.keys.push_back(i->first);
        i = due_.erase(i);
        continue;
      }
      if (!first || i->second < *first)
        first = i->second;
      ++i;
    }
    if (first && (!armed_ || *first < *armed_)) {
      armed_ = first;
      out.arm_at = first;
    }
    return out;
  }

  size_t size() const { return due_.size(); }
  bool armed() const { return armed_.has_value(); }

private:
  std::map<uint64_t, time_point> due_; ///< by key; few (the calls in flight)
  std::optional<time_point> armed_;    ///< when the one armed timer fires
};

} // namespace cafex
