#include "health_monitor.hpp"

namespace cafex::serve {

std::string health_snapshot::status() const {
  if (!answered)
    return "failed";
  if (reason.empty())
    return "healthy";
  bool dead = false;
  bool recovering = false;
  bool some_healthy = false;
  for (const auto& w : workers) {
    dead = dead || w.state == health_state::dead;
    recovering = recovering || w.state == health_state::restarting
                 || w.state == health_state::rebuilding;
    some_healthy = some_healthy || w.state == health_state::healthy;
  }
  // A recovery reads restarting (the lost rank) and rebuilding (the others): no rank is
  // healthy for 100-300 ms, yet nothing failed. Dead means the executor gave up.
  if (recovering && !dead)
    return "recovering";
  return some_healthy ? "degraded" : "failed";
}

int health_snapshot::http_status() const {
  auto s = status();
  // A recovering service still takes requests: they wait for it and go on. Answering 503
  // would make a load balancer drop it on every normal recovery.
  return s == "healthy" || s == "recovering" ? 200 : 503;
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
    if (w.state == health_state::healthy)
      continue;
    if (!s.reason.empty())
      s.reason += "; ";
    s.reason += "rank " + std::to_string(w.rank) + " on node " + w.node_id + " is "
                + to_string(w.state) + (w.detail.empty() ? "" : " (" + w.detail + ")");
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

void health_monitor::when_ready(std::function<void(bool, std::string)> fn,
                                std::chrono::milliseconds timeout) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    waiter_ = std::move(fn);
    waiter_deadline_ = std::chrono::steady_clock::now() + timeout;
    poll_now_ = true;
  }
  cv_.notify_all();
}

void health_monitor::loop() {
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    // While someone waits for recovery, poll faster than the health interval.
    auto wait = waiter_ ? std::min(interval_, std::chrono::milliseconds(20)) : interval_;
    cv_.wait_for(lock, wait, [this] { return stop_ || poll_now_; });
    if (stop_)
      return;
    poll_now_ = false;
    lock.unlock();
    auto snap = judge_health(ex_.check_health());
    lock.lock();
    latest_ = std::move(snap);
    if (!waiter_)
      continue;
    bool dead = false;
    for (const auto& w : latest_.workers)
      dead = dead || w.state == health_state::dead;
    bool ok = latest_.healthy();
    if (!ok && !dead && std::chrono::steady_clock::now() < waiter_deadline_)
      continue;
    auto fn = std::move(waiter_);
    waiter_ = nullptr;
    auto why = ok     ? std::string()
               : dead ? latest_.reason
                      : "the executor did not recover in time: " + latest_.reason;
    lock.unlock();
    fn(ok, why);
    lock.lock();
  }
}

} // namespace cafex::serve
