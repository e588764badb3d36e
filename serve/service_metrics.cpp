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

// A label value in the text format: backslash, quote and newline escaped.
std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
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

namespace {

int64_t now_second() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

} // namespace

void service_metrics::tokens(uint64_t n) {
  tokens_ += n;
  const auto sec = now_second();
  auto& slot = per_second_[static_cast<size_t>(sec) % per_second_.size()];
  if (slot.second != sec)
    slot = {sec, 0};
  slot.tokens += n;
}

double service_metrics::tokens_per_second() const {
  // The last rate_window_s whole seconds (the current one is still filling).
  const auto now = now_second();
  uint64_t sum = 0;
  for (const auto& slot : per_second_)
    if (slot.second < now && slot.second >= now - rate_window_s)
      sum += slot.tokens;
  return static_cast<double>(sum) / rate_window_s;
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
  head(out, "cafex_tokens_per_second", "gauge",
       "Tokens sent per second, over the last 10 whole seconds");
  out += "cafex_tokens_per_second " + num(tokens_per_second()) + "\n";
  head(out, "cafex_requests_cancelled_total", "counter",
       "Requests (choices) cancelled because their client went away");
  out += "cafex_requests_cancelled_total " + std::to_string(cancelled_) + "\n";
  head(out, "cafex_recoveries_total", "counter",
       "Times the service paused for the executor to recover (a worker lost, a "
       "communicator rebuilt) and re-prefilled its running requests");
  out += "cafex_recoveries_total " + std::to_string(recoveries_) + "\n";
  head(out, "cafex_executor_state", "gauge",
       "1 for the executor's state as /health reports it (healthy, recovering, degraded, "
       "failed), 0 for the others");
  for (const char* st : {"degraded", "failed", "healthy", "recovering"})
    out += std::string("cafex_executor_state{state=\"") + st + "\"} "
           + (h.status() == st ? "1" : "0") + "\n";
  head(out, "cafex_worker_state", "gauge",
       "1 per worker (rank, node) in its state, as the driver sees it");
  for (const auto& w : h.workers)
    out += "cafex_worker_state{rank=\"" + std::to_string(w.rank) + "\",node=\""
           + escape_label(w.node_id) + "\",state=\"" + to_string(w.state) + "\"} 1\n";
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
