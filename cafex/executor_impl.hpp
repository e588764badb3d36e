// Private: the state behind cafex::executor, shared by executor.cpp (start-up, calls,
// shutdown) and executor_recovery.cpp (the restart policy).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/blocking_ask.hpp"
#include "actors/cluster/cluster.hpp"
#include "actors/driver_actor.hpp"
#include "actors/node_agent_actor.hpp"
#include "actors/system_config.hpp"
#include "cafex/executor.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "runtime/progress.hpp"
#include "transport/rendezvous_server.hpp"

namespace cafex {

using clock = std::chrono::steady_clock;

struct executor::impl {
  executor_options opts;
  system_config cfg;
  caf::actor_system sys;
  node_agent_actor agent; ///< the embedded agent (none with remote nodes)
  std::unique_ptr<cluster> nodes;
  driver_actor driver;
  caf::actor client;
  std::unique_ptr<rendezvous_server> store;
  rank_plan plan;
  std::mutex mtx;
  std::atomic<bool> stopped{false};
  /// The compiled same-node generation for blocking callers (the driver publishes it).
  std::shared_ptr<lane_slot> lane = std::make_shared<lane_slot>();
  /// Steps submitted through the client actor and not answered yet: while there are any,
  /// a blocking call takes the same path, behind them.
  std::shared_ptr<std::atomic<int>> async_pending = std::make_shared<std::atomic<int>>(0);

  explicit impl(executor_options o) : opts(std::move(o)), cfg(opts.liveness), sys(cfg) {}

  ~impl() { shutdown(); }

  /// Blocking request with a deadline from the caller's thread (see blocking_ask).
  template <class R, class... Ts>
  caf::expected<R> ask(Ts&&... xs) {
    return blocking_ask<R>(sys, std::forward<Ts>(xs)...);
  }

  /// collective_rpc through the driver: `timeout` per worker, the rest of `ro` (reply
  /// rank, ranks, recovery) as given.
  caf::expected<std::vector<std::string>>
  rpc(const std::string& method, const std::string& args, std::chrono::milliseconds timeout,
      rpc_options ro = {}) {
    ro.timeout_ms = timeout.count();
    // The driver enforces `timeout` per worker; the slack only guards the driver itself.
    return ask<std::vector<std::string>>(driver, timeout + defaults::driver_slack,
                                         rpc_atom::value, method, args, ro);
  }

  std::optional<startup_phase> phase; ///< the start-up phase running (none: not there yet)
  std::vector<int64_t> worker_pids;   ///< by rank, once begin_phase asked for them

  caf::error start_up();
  /// Enters start-up phase `p`: records it and tells options.on_startup_phase.
  void begin_phase(startup_phase p, clock::time_point deadline);
  /// The progress lines of the wait now under way (executor_options::on_progress).
  std::unique_ptr<progress_ticker> ticker;
  caf::error start_embedded_agent();
  caf::error place_and_spawn(clock::time_point deadline);
  /// The seed's lifecycle after the workers exist, one phase per function, in its order
  /// (executor_lifecycle.cpp).
  caf::error configure(clock::time_point deadline);
  caf::expected<std::vector<worker_report>> collect_reports(clock::time_point deadline);
  caf::error plan_workers(const std::vector<worker_report>& reports);
  caf::error rerank_workers(clock::time_point deadline);
  caf::error update_environment(clock::time_point deadline);
  caf::error init_workers(clock::time_point deadline);
  caf::error init_devices(clock::time_point deadline);
  caf::error load_models(clock::time_point deadline);
  caf::error configure_dataflow(clock::time_point deadline);

  // The restart policy (executor_recovery.cpp).
  std::vector<int32_t> created_of; ///< by rank: the created rank (its bundle)
  nlohmann::json envs;             ///< by rank: update_environment_variables entries
  nlohmann::json kwargs;           ///< by rank: init_worker entries
  int comm_generation = 0;
  int recoveries = 0;
  std::mutex recovery_mtx;
  std::condition_variable recovery_cv;
  std::vector<std::pair<int32_t, std::string>> recovery_requests;
  bool recovery_stop = false;
  std::thread recovery_thread;

  /// Called by the driver (must not block): queues the loss for the recovery thread.
  void request_recovery(int32_t rank, std::string why);
  /// Every rank rebuilds its TP communicator under a new generation (and drops its KV
  /// cache): reinitialize_distributed, and a teardown with steps in flight.
  caf::error rebuild_communicators();
  /// rebuild_communicators after a teardown that closed them, then tells the driver
  /// (rebuilt_atom) so that the steps submitted meanwhile run, or fail with the reason.
  caf::error rebuild_after_teardown();
  void recovery_loop();
  caf::error recover_once(const std::string& why);
  /// Communicator generation `generation` starts: rendezvous of earlier generations
  /// still waiting on the store are answered at once (rendezvous_server::fence).
  void fence_rendezvous(int generation);
  /// Drops queued loss reports that the running attempt covers: a broken communicator
  /// (rank -1) and the ranks in `covered` (one incident, one recovery).
  void join_incident(const std::set<int32_t>& covered);
  /// The driver's health report once no lost link is still being asked about (bounded).
  caf::expected<std::vector<worker_health>> settled_health(clock::time_point deadline);
  /// Ends the lost worker at w.rank, respawns it on its bundle (or another node) and
  /// installs it in the driver; answers the rank.
  caf::expected<int32_t> respawn_rank(const worker_health& w, clock::time_point deadline);
  void stop_recovery();

  void shutdown() {
    std::lock_guard<std::mutex> guard{mtx};
    if (stopped)
      return;
    stopped = true;
    stop_recovery();
    caf::scoped_actor self{sys};
    if (driver) {
      self->request(driver, defaults::driver_stop_timeout, stop_atom::value)
        .receive([](bool) {}, [](caf::error&) {});
    }
    // Stops the workers (waiting until they are reaped) and frees the placement group.
    if (nodes)
      nodes->shutdown();
    if (agent)
      self->send_exit(agent, caf::exit_reason::user_shutdown);
    if (store)
      store->stop();
  }
};

} // namespace cafex
