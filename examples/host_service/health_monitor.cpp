#include "health_monitor.hpp"

namespace cafex::serve {

std::string health_snapshot::status() const {
  if (!answered)
    return "failed";
  if (reason.empty())
    return "healthy";
  for (const auto& w : workers)
    if (w.state == "healthy")
      return "degraded";
  return "failed";
}

health_snapshot judge_health(const caf::expected<std::vector<worker_health>>& r) {
  health_snapshot s;
  s.taken = std::chrono::steady_clock::now();
  if (!r) {
    s.reason = "the executor did not answer check_health: " + describe(r.error());
    return s;
  }
  s.answered = true;
  s.workers = *r;
  if (s.workers.empty())
    s.reason = "no workers";
  for (const auto& w : s.workers) {
    if (w.state == "healthy")
      continue;
    if (!s.reason.empty())
      s.reason += "; ";
    s.reason += "rank " + std::to_string(w.rank) + " on node " + w.node_id + " is " + w.state
                + (w.detail.empty() ? "" : " (" + w.detail + ")");
  }
  return s;
}

health_monitor::health_monitor(executor& ex, std::chrono::milliseconds interval)
  : ex_(ex), interval_(interval) {
  latest_ = judge_health(ex_.check_health());
  thread_ = std::thread([this] { loop(); });
}

health_snapshot health_monitor::latest() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return latest_;
}

void health_monitor::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void health_monitor::loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  while (!cv_.wait_for(lock, interval_, [this] { return stop_; })) {
    lock.unlock();
    auto snap = judge_health(ex_.check_health());
    lock.lock();
    latest_ = std::move(snap);
  }
}

} // namespace cafex::serve
