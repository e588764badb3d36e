#include "service_metrics.hpp"

#include <cstdio>
#include <set>

namespace cafex::serve {

namespace {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

void head(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

} // namespace

void service_metrics::step_ok(std::chrono::nanoseconds latency, size_t requests) {
  double s = std::chrono::duration<double>(latency).count();
  size_t i = 0;
  while (i < buckets.size() && s > buckets[i])
    ++i;
  ++counts_[i];
  sum_seconds_ += s;
  ++steps_;
  step_requests_ += requests;
}

std::string service_metrics::render(const batch_gauges& g, const health_snapshot& h) const {
  std::string out;
  head(out, "cafex_step_latency_seconds", "histogram",
       "Time from submitting a step to its result (the executor's per-step time)");
  uint64_t cum = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    cum += counts_[i];
    out += "cafex_step_latency_seconds_bucket{le=\"" + num(buckets[i]) + "\"} "
           + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += "cafex_step_latency_seconds_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += "cafex_step_latency_seconds_sum " + num(sum_seconds_) + "\n";
  out += "cafex_step_latency_seconds_count " + std::to_string(steps_) + "\n";
  head(out, "cafex_step_requests_total", "counter", "Requests summed over successful steps");
  out += "cafex_step_requests_total " + std::to_string(step_requests_) + "\n";
  head(out, "cafex_steps_in_flight", "gauge", "Steps submitted and not yet answered");
  out += "cafex_steps_in_flight " + std::to_string(g.steps_in_flight) + "\n";
  head(out, "cafex_requests_queued", "gauge",
       "Accepted requests waiting for their first step");
  out += "cafex_requests_queued " + std::to_string(g.queued) + "\n";
  head(out, "cafex_requests_running", "gauge", "Requests in the running batch");
  out += "cafex_requests_running " + std::to_string(g.running) + "\n";
  head(out, "cafex_requests_accepted_total", "counter", "Completion requests accepted");
  out += "cafex_requests_accepted_total " + std::to_string(g.accepted) + "\n";
  head(out, "cafex_tokens_generated_total", "counter", "Tokens sampled and sent");
  out += "cafex_tokens_generated_total " + std::to_string(tokens_) + "\n";
  head(out, "cafex_workers", "gauge", "Workers by state, as the driver sees them");
  // Every state, even at zero, sorted by name as before (exporters diff these lines).
  std::map<std::string, int> states;
  for (auto s : all_health_states)
    states[to_string(s)] = 0;
  for (const auto& w : h.workers)
    ++states[to_string(w.state)];
  for (const auto& [state, n] : states)
    out += "cafex_workers{state=\"" + state + "\"} " + std::to_string(n) + "\n";
  head(out, "cafex_step_failures_total", "counter", "Failed steps by error kind");
  std::map<std::string, uint64_t> failures = {{"worker_lost", 0},
                                              {"timeout", 0},
                                              {"transport_failed", 0}};
  for (const auto& [kind, n] : failures_)
    failures[kind] = n;
  for (const auto& [kind, n] : failures)
    out += "cafex_step_failures_total{kind=\"" + kind + "\"} " + std::to_string(n) + "\n";
  head(out, "cafex_http_responses_total", "counter", "HTTP responses by status code");
  for (const auto& [code, n] : responses_)
    out += "cafex_http_responses_total{code=\"" + std::to_string(code) + "\"} "
           + std::to_string(n) + "\n";
  head(out, "cafex_health_check_age_seconds", "gauge", "Age of the last health check");
  out += "cafex_health_check_age_seconds "
         + num(
           std::chrono::duration<double>(std::chrono::steady_clock::now() - h.taken).count())
         + "\n";
  return out;
}

} // namespace cafex::serve
