// A worker's hot loop on the same-node shared-memory path: a thread that waits on its
// input ring, runs the stage, and writes the hand-off to the next stage and its report to
// the driver, without a CAF message or a TCP hop on the way. The worker actor keeps
// everything else (methods, compile, teardown, liveness).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "actors/worker_methods.hpp"
#include "actors/worker_stage.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

class worker_hot_loop {
public:
  /// Opens the rings named by the stage's config and starts the thread. `runner_mutex`
  /// guards the model runner against the actor thread's methods.
  static caf::expected<std::unique_ptr<worker_hot_loop>>
  start(worker_state& st, worker_stage& stage, std::mutex& runner_mutex);

  /// Stops and joins the thread.
  ~worker_hot_loop();

private:
  worker_hot_loop(worker_state& st, worker_stage& stage, std::mutex& mtx);
  void run();
  void handle(const std::vector<char>& bytes);
  shm_doorbell* bell_for(uint64_t seq) const;
  void report_failure(uint64_t seq, const caf::error& err);

  worker_state& st_;
  worker_stage& stage_;
  std::mutex& runner_mutex_;
  std::unique_ptr<shm_ring> in_;
  std::unique_ptr<shm_ring> next_;
  std::unique_ptr<shm_ring> report_;
  std::unique_ptr<shm_doorbell> bell_;
  std::unique_ptr<shm_doorbell> lane_bell_; ///< the direct lane's (output rank)
  std::unique_ptr<shm_board> board_;        ///< this rank's last finished direct step
  std::chrono::milliseconds timeout_;
  std::chrono::microseconds spin_; ///< before sleeping on the input ring
  std::vector<char> buf_;          ///< the input ring's message, reused
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace cafex
