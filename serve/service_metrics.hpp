// What the service counts, and its Prometheus text rendering (format 0.0.4, HELP and TYPE
// on every family): step latency histogram, steps in flight, requests queued, running and
// cancelled, tokens (total and per second), recoveries, the executor's state, workers by
// state and each worker's state, failures by kind, HTTP responses by code. Every
// structure is bounded. Touched only on the service's io thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "health_monitor.hpp"

namespace cafex::serve {

/// Gauges the batcher owns, read when rendering.
struct batch_gauges {
  size_t steps_in_flight = 0;
  size_t queued = 0;
  size_t running = 0;
  uint64_t accepted = 0;
};

class service_metrics {
public:
  /// Upper bounds (seconds) of the step latency buckets; +Inf is implied.
  static constexpr std::array<double, 14> buckets = {0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,    0.025,  0.05,  0.1,    0.25,
                                                     0.5,     1,      2.5,   10};

  void step_ok(std::chrono::nanoseconds latency, size_t requests);
  void step_failed(const std::string& kind) { ++failures_[kind]; }
  void response(int status) { ++responses_[status]; }
  void tokens(uint64_t n);
  void cancelled(uint64_t n) { cancelled_ += n; }
  void recovery() { ++recoveries_; }
  /// Tokens per second over the last `rate_window_s` whole seconds.
  double tokens_per_second() const;
  static constexpr int rate_window_s = 10;

  std::string render(const batch_gauges& g, const health_snapshot& h) const;

private:
  std::array<uint64_t, buckets.size() + 1> counts_{}; ///< last one: +Inf
  double sum_seconds_ = 0;
  uint64_t steps_ = 0;
  uint64_t step_requests_ = 0;
  uint64_t tokens_ = 0;
  uint64_t cancelled_ = 0;
  uint64_t recoveries_ = 0;
  /// Tokens per second of the steady clock, one slot per second (second % slots): the
  /// rate gauge's window, bounded whatever the run's length.
  struct second_count {
    int64_t second = -1;
    uint64_t tokens = 0;
  };
  std::array<second_count, rate_window_s + 1> per_second_{};
  std::map<std::string, uint64_t> failures_;
  std::map<int, uint64_t> responses_;
};

} // namespace cafex::serve
