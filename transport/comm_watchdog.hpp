// A watchdog thread per communicator, as PyTorch's ProcessGroupNCCL keeps one: while the
// model thread has work enqueued on its stream (armed), the watchdog probes the
// communicator's asynchronous error every `period` and watches the work's deadline; on an
// error or a missed deadline it aborts the communicator once (so kernels stuck on a dead
// peer return) and records why. The model thread then only polls its stream and reads
// failure(): no communicator call per poll, no host synchronisation per collective.
//
// Pure logic over two hooks (probe, abort), so it is unit-tested with fakes and no GPU.
// The model thread holds guard() around every call into the communicator: abort never
// runs in the middle of one (NCCL allows ncclCommAbort from another thread, but not
// while the same communicator is inside an enqueue).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <caf/error.hpp>

namespace cafex {

class comm_watchdog {
public:
  using clock_type = std::chrono::steady_clock;

  struct hooks {
    /// The communicator's asynchronous error; none while healthy or still in progress.
    /// Called on the watchdog thread, under guard().
    std::function<caf::error()> probe;
    /// Aborts the communicator. Called at most once, on the watchdog thread, under guard().
    std::function<void()> abort;
  };

  /// `who` names the communicator in errors ("nccl group 'tp0' rank 1/2 (GPU 1)").
  /// Starts the thread; `period` bounds how late a failure or a deadline is acted on.
  comm_watchdog(std::string who, hooks h,
                std::chrono::milliseconds period = std::chrono::milliseconds{5});

  /// Stops and joins the thread (within one period); never aborts.
  ~comm_watchdog();

  comm_watchdog(const comm_watchdog&) = delete;
  comm_watchdog& operator=(const comm_watchdog&) = delete;

  /// Work was enqueued that must finish by `deadline`. While armed, a later arm keeps the
  /// earlier (tighter) deadline: the oldest outstanding work bounds the wait.
  void arm(clock_type::time_point deadline);

  /// The enqueued work finished; the watchdog idles (no probes) until the next arm.
  void disarm();

  /// True once the watchdog aborted the communicator (an error or a missed deadline).
  bool fired() const { return fired_.load(std::memory_order_acquire); }

  /// Why it fired: errc::timeout for a missed deadline, errc::transport_failed for an
  /// asynchronous error (with the probe's text); none while it has not fired.
  caf::error failure() const;

  /// Held by the model thread around calls into the communicator.
  std::unique_lock<std::mutex> guard() { return std::unique_lock<std::mutex>{comm_mtx_}; }

  /// Probes run so far (tests: the watchdog idles while disarmed).
  size_t probes() const { return probes_.load(std::memory_order_relaxed); }

private:
  void run();
  void fire(caf::error why);

  std::string who_;
  hooks hooks_;
  std::chrono::milliseconds period_;

  std::mutex comm_mtx_; ///< guard(): the communicator's calls vs abort

  mutable std::mutex mtx_; ///< armed_, deadline_, stop_, failure_
  std::condition_variable cv_;
  bool armed_ = false;
  bool stop_ = false;
  clock_type::time_point deadline_{};
  caf::error failure_;
  std::atomic<bool> fired_{false};
  std::atomic<size_t> probes_{0};
  std::thread thread_; ///< last: starts after every member above exists
};

} // namespace cafex
