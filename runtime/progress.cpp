#include "runtime/progress.hpp"

#include <algorithm>
#include <cstdio>

namespace cafex {

std::string progress_text(const std::string& what, std::chrono::milliseconds waited,
                          std::chrono::milliseconds left) {
  char buf[96];
  std::snprintf(buf, sizeof buf, ": %.1f s so far, deadline in %.1f s",
                static_cast<double>(waited.count()) / 1000.0,
                static_cast<double>(std::max<int64_t>(0, left.count())) / 1000.0);
  return "waiting for " + what + buf;
}

progress_ticker::progress_ticker(progress_sink sink, std::string what,
                                 clock::time_point deadline,
                                 std::chrono::milliseconds first_after,
                                 std::chrono::milliseconds every)
  : sink_(std::move(sink)),
    what_(std::move(what)),
    start_(clock::now()),
    deadline_(deadline),
    first_after_(first_after),
    every_(every) {
  if (sink_)
    thread_ = std::thread([this] { run(); });
}

progress_ticker::~progress_ticker() {
  {
    std::lock_guard<std::mutex> guard{mx_};
    done_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

int progress_ticker::lines() const {
  std::lock_guard<std::mutex> guard{mx_};
  return lines_;
}

void progress_ticker::run() {
  std::unique_lock<std::mutex> lock{mx_};
  auto next = start_ + first_after_;
  for (;;) {
    // Woken early only when the wait ended (done_): the condition is the wake-up's reason.
    if (cv_.wait_until(lock, std::min(next, deadline_), [this] { return done_; }))
      return;
    const auto now = clock::now();
    if (now >= deadline_)
      return;
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    auto line = progress_text(what_, duration_cast<milliseconds>(now - start_),
                              duration_cast<milliseconds>(deadline_ - now));
    ++lines_;
    lock.unlock();
    sink_(line);
    lock.lock();
    next = now + every_;
  }
}

} // namespace cafex
