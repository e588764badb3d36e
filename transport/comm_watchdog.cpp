#include "transport/comm_watchdog.hpp"

#include <fmt/format.h>

#include "runtime/error.hpp"

namespace cafex {

comm_watchdog::comm_watchdog(std::string who, hooks h, std::chrono::milliseconds period)
  : who_(std::move(who)),
    hooks_(std::move(h)),
    period_(std::max(period, std::chrono::milliseconds{1})),
    thread_([this] { run(); }) {}

comm_watchdog::~comm_watchdog() {
  {
    std::lock_guard<std::mutex> lock{mtx_};
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void comm_watchdog::arm(clock_type::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock{mtx_};
    if (armed_ && deadline_ <= deadline)
      return;
    armed_ = true;
    deadline_ = deadline;
  }
  cv_.notify_all();
}

void comm_watchdog::disarm() {
  std::lock_guard<std::mutex> lock{mtx_};
  armed_ = false;
}

caf::error comm_watchdog::failure() const {
  std::lock_guard<std::mutex> lock{mtx_};
  return failure_;
}

void comm_watchdog::fire(caf::error why) {
  {
    auto lock = guard();
    if (hooks_.abort)
      hooks_.abort();
  }
  {
    std::lock_guard<std::mutex> lock{mtx_};
    failure_ = std::move(why);
    armed_ = false;
  }
  fired_.store(true, std::memory_order_release);
}

void comm_watchdog::run() {
  std::unique_lock<std::mutex> lock{mtx_};
  for (;;) {
    // Idle while disarmed; while armed, wake every period (or earlier at the deadline).
    if (!armed_)
      cv_.wait(lock, [this] { return stop_ || armed_; });
    else
      cv_.wait_until(lock, std::min(deadline_, clock_type::now() + period_),
                     [this] { return stop_; });
    if (stop_)
      return;
    if (!armed_ || fired_.load(std::memory_order_relaxed))
      continue;
    const auto deadline = deadline_;
    lock.unlock();
    caf::error err;
    if (hooks_.probe) {
      auto g = guard();
      err = hooks_.probe();
    }
    probes_.fetch_add(1, std::memory_order_relaxed);
    if (err) {
      fire(make_error(errc::transport_failed,
                      fmt::format("{}: the communicator reported an asynchronous error (a "
                                  "peer died or its link failed); aborted it: {}",
                                  who_, describe(err))));
      return;
    }
    if (clock_type::now() >= deadline) {
      lock.lock();
      // Disarmed or re-armed while we probed: the work we timed finished in time.
      const bool still_late = armed_ && deadline_ == deadline;
      lock.unlock();
      if (still_late) {
        fire(make_error(errc::timeout,
                        fmt::format("{}: enqueued collectives did not finish by their "
                                    "deadline (a peer may be dead or stuck); aborted the "
                                    "communicator",
                                    who_)));
        return;
      }
    }
    lock.lock();
  }
}

} // namespace cafex
