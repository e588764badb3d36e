// Polls the executor's health off the event loop: a thread calls check_health() every
// interval (a blocking call with its own deadline) and keeps the latest snapshot, which
// the HTTP thread reads without blocking. The driver marks a worker dead as soon as its
// CAF monitor fires, so /health turns 503 within one interval of a worker's death.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cafex/executor.hpp"

namespace cafex::serve {

struct health_snapshot {
  bool answered = false; ///< check_health returned (else `reason` says why)
  std::vector<worker_health> workers;
  std::string reason; ///< empty when every worker is healthy
  std::chrono::steady_clock::time_point taken{};

  /// "healthy"; "recovering" (the restart policy replaces a worker or rebuilds the
  /// communicators: requests wait and go on); "degraded" (some workers not healthy and
  /// nothing recovers them); "failed" (none healthy, the executor gave up, or it did not
  /// answer).
  std::string status() const;
  /// The HTTP status /health answers for status(): 200 while requests are served
  /// (healthy, recovering), 503 while they fail (degraded, failed). README: cafex-serve.
  int http_status() const;
  bool healthy() const { return answered && reason.empty(); }
};

/// Judges one check_health answer (pure: unit-tested).
health_snapshot judge_health(const caf::expected<std::vector<worker_health>>& r);

class health_monitor {
public:
  health_monitor(executor& ex, std::chrono::milliseconds interval);
  ~health_monitor() { stop(); }

  health_snapshot latest() const;
  void stop();

  /// Calls `fn(true, "")` from the monitor's thread once every worker is healthy again,
  /// or `fn(false, why)` when a worker is dead for good (the executor gave up) or
  /// `timeout` passes. One waiter at a time (a newer one replaces it). Never blocks.
  void when_ready(std::function<void(bool, std::string)> fn,
                  std::chrono::milliseconds timeout);

private:
  void loop();

  executor& ex_;
  std::chrono::milliseconds interval_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false;
  health_snapshot latest_;
  std::function<void(bool, std::string)> waiter_;
  std::chrono::steady_clock::time_point waiter_deadline_{};
  bool poll_now_ = false;
  std::thread thread_;
};

} // namespace cafex::serve
