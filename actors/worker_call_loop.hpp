// A worker's call loop on the same-node shared-memory path: a thread that waits on the
// rank's call ring, runs each method by name (under the runner mutex, as the worker
// actor does) and writes the reply to its reply ring, so that collective_rpc on the
// direct lane costs no CAF message. The worker actor keeps every call made before the
// dataflow is compiled, and those of a recovery.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "actors/worker_methods.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

class worker_call_loop {
public:
  /// Opens "<prefix>call<rank>", "<prefix>reply<rank>" and the lane's doorbell, then
  /// starts the thread.
  static caf::expected<std::unique_ptr<worker_call_loop>>
  start(worker_state& st, const method_table& methods, std::mutex& runner_mutex,
        const std::string& prefix, std::chrono::microseconds spin);

  /// Stops and joins the thread (after the method it runs, if any).
  ~worker_call_loop();

private:
  worker_call_loop(worker_state& st, const method_table& methods, std::mutex& mtx)
    : st_(st), methods_(methods), runner_mutex_(mtx) {}
  void run();
  void answer(const std::vector<char>& buf); ///< runs one call, writes its reply

  worker_state& st_;
  const method_table& methods_;
  std::mutex& runner_mutex_;
  std::unique_ptr<shm_ring> calls_;
  std::unique_ptr<shm_ring> replies_;
  std::unique_ptr<shm_doorbell> bell_;
  std::chrono::microseconds spin_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace cafex
