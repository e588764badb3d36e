// Progress lines for a wait: once a wait has lasted `first_after` (about a second), a line
// saying what is awaited, for how long so far and until when, then one every `every`, on
// a thread of its own, until the ticker is destroyed (the wait ended) or the deadline
// passes. Nothing is printed for a wait shorter than first_after. The sink decides where
// lines go (the CLI: stderr, unless --quiet).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace cafex {

using progress_sink = std::function<void(const std::string& line)>;

/// "waiting for WHAT: 2.0 s so far, deadline in 58.0 s".
std::string progress_text(const std::string& what, std::chrono::milliseconds waited,
                          std::chrono::milliseconds left);

class progress_ticker {
public:
  using clock = std::chrono::steady_clock;

  /// A ticker that says nothing (no sink).
  progress_ticker() = default;

  progress_ticker(progress_sink sink, std::string what, clock::time_point deadline,
                  std::chrono::milliseconds first_after = std::chrono::milliseconds{1000},
                  std::chrono::milliseconds every = std::chrono::milliseconds{3000});
  ~progress_ticker();

  progress_ticker(const progress_ticker&) = delete;
  progress_ticker& operator=(const progress_ticker&) = delete;

  /// Lines printed so far.
  int lines() const;

private:
  void run();

  progress_sink sink_;
  std::string what_;
  clock::time_point start_{}, deadline_{};
  std::chrono::milliseconds first_after_{}, every_{};
  mutable std::mutex mx_;
  std::condition_variable cv_;
  bool done_ = false;
  int lines_ = 0;
  std::thread thread_;
};

} // namespace cafex
