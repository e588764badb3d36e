// How long a hot-path reader spins for its next message after one arrived. Spinning pays
// only while messages follow each other within the spin: a worker whose steps come 50 ms
// apart (a paced client, a test, a server between requests) would burn a core for nothing
// after every step, and take it from whatever else runs on the machine.
#pragma once

#include <chrono>

namespace cafex {

/// The spin before the next read, from the gaps between messages: the full budget while
/// each message comes within it of the previous one; after each message that came later,
/// half the budget of before, down to no spin once it falls under `floor`. One message
/// within the full budget brings the full budget back.
class spin_governor {
public:
  using duration = std::chrono::microseconds;
  using clock = std::chrono::steady_clock;

  explicit spin_governor(duration max, duration floor = duration{100})
    : max_(max), floor_(floor), now_(max) {}

  /// The spin for the next read.
  [[nodiscard]] duration budget() const { return now_; }

  /// The next message came `gap` after the previous one was handled.
  void saw(duration gap) {
    if (gap <= max_) {
      now_ = max_;
      return;
    }
    now_ /= 2;
    if (now_ < floor_)
      now_ = duration{0};
  }

  // -- a reader's loop: read (spinning before_read()), arrived, handle, handled ------

  /// The spin for the next read: none before the first message and after an idle read.
  [[nodiscard]] duration before_read() const { return spinning_ ? now_ : duration{0}; }

  /// A message was read at `t`.
  void arrived(clock::time_point t) {
    if (handled_any_)
      saw(std::chrono::duration_cast<duration>(t - done_));
  }

  /// The message was handled at `t`: the next one may come soon.
  void handled(clock::time_point t) {
    done_ = t;
    handled_any_ = true;
    spinning_ = true;
  }

  /// A read ended with nothing: sleep, not spin, until the next message.
  void idle() { spinning_ = false; }

private:
  duration max_;
  duration floor_;
  duration now_;
  clock::time_point done_{};
  bool handled_any_ = false;
  bool spinning_ = false;
};

} // namespace cafex
