// cafex: the executor a host program embeds. It places one worker process per device,
// ranks and configures the workers as vLLM's RayDistributedExecutor does, and runs model
// steps through them. Thread-safe; every call has a deadline; errors are values.
//
// THE public header: `#include "cafex/executor.hpp"` is all a host needs to start an
// executor, run steps (blocking, std::future or completion callback), call worker methods,
// check health and shut down. Two optional companions:
//   - "cafex/asio.hpp":   async_execute_model(), the completion-handler form that posts
//                         results to a Boost.Asio io_context or strand;
//   - "cafex/worker.hpp": worker_main() and method_table, for a host that builds its own
//                         worker program with extra methods or models.
// Installed with `cmake --install`; consumers use find_package(cafex) (target cafex::cafex)
// or pkg-config (cafex.pc). See examples/embed/README.md.
//
// Threading: every member function may be called from any thread, concurrently. Blocking
// calls (start, collective_rpc, execute_model, check_health, dataflow_stats, shutdown)
// block only the calling thread, with a deadline; do not call them from a CAF actor or an
// event-loop thread — use submit() / async_execute_model() / the *_async forms there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

// Public type headers only (plain structs; from CAF no more than error and expected): the
// actor system, the actors and the sockets stay behind executor::impl.
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster/cluster_options.hpp"
#include "actors/liveness_options.hpp"
#include "runtime/health.hpp" // worker_health, health_state
#include "runtime/dataflow/scheduler_output.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "runtime/log_sink.hpp"
#include "runtime/models/model_runner.hpp"
#include "runtime/plan/placement.hpp"
#include "runtime/plan/rank_plan.hpp"

namespace cafex {

/// What the executor does when a worker is lost (its process died, or it stopped
/// answering heartbeats) or a TP communicator breaks.
///   fail:    pending and later steps fail with worker_lost; the executor stays failed.
///   restart: pending steps fail with worker_lost (the host resubmits them); the driver
///            respawns the lost worker (its node when alive, else a free bundle), re-runs
///            its lifecycle, rebuilds every rank's communicators under a new generation
///            (reinitialize_distributed) and drops every KV cache; state() is degraded
///            meanwhile and ready again after. Live requests are then re-prefilled by the
///            host (prompt plus the tokens generated so far).
enum class failure_policy { fail, restart };

/// The phases of start(), in the seed's order, as executor_options::on_startup_phase
/// reports them; a start-up error names the phase it failed in.
enum class startup_phase {
  placement,          ///< reserving the placement group's bundles on the node agents
  spawn_workers,      ///< starting one worker process per bundle
  rank_workers,       ///< node and GPU ids, the rank plan, the rerank
  update_environment, ///< update_environment_variables on every worker
  init_worker,        ///< init_worker: ranks, distributed_init_method, the model config
  init_device,        ///< init_device: the device and the TP communicator
  load_model,         ///< load_model
  compile_dataflow,   ///< the compiled dataflow and its channels
};

const char* to_string(startup_phase p);

/// What executor_options::on_startup_phase hears as a phase begins.
struct startup_event {
  startup_phase phase = startup_phase::placement;
  /// By rank, each worker's process id as the worker reports it (its process_info), from
  /// update_environment on; empty before (no worker is ranked yet).
  std::vector<int64_t> worker_pids;
};

/// Everything start() needs. Defaults are the documented ones (README, "C++ API").
struct executor_options {
  parallel_config parallel;   ///< tensor x pipeline parallel sizes
  model_config model;         ///< which model and its seed
  std::string device = "cpu"; ///< "cpu" or "cuda"
  int devices = 0;            ///< embedded node: logical devices (0: tp x pp)
  placement_strategy strategy = placement_strategy::pack;
  int bundles = 0;                 ///< placement group size (0: world size)
  std::vector<int> bundle_indices; ///< the seed's VLLM_RAY_BUNDLE_INDICES
  std::string worker_program; ///< run as `<program> worker ...` (default: this executable)
  std::string host_ip;        ///< the driver's address (empty: 127.0.0.1 embedded,
                              ///< else the interface facing the nodes)
  /// Port of the rendezvous store the workers' collectives meet at (torchrun's
  /// --master-port: a firewall can open exactly it); 0: an ephemeral port.
  uint16_t rendezvous_port = 0;
  /// Remote node agents (cluster.nodes non-empty), their security, fractional and custom
  /// resources, placement timeout. strategy, bundles, bundle_indices and host_ip above
  /// take precedence over the same fields in here.
  cluster_options cluster;
  /// trace, debug, info, warn, error or off: this process's cafex lines (driver, embedded
  /// node agent) and the workers'. start() fails on another value.
  std::string log_level = "info";
  /// Where this process's cafex lines go (empty: stderr, in the format of every cafex
  /// process). cafex logs through spdlog's default logger, which start() replaces.
  /// Workers are processes of their own: their lines go to their stderr.
  log_callback log_sink;
  std::chrono::milliseconds start_timeout = defaults::start_timeout; ///< whole start-up
  std::chrono::milliseconds rpc_timeout = defaults::rpc_timeout; ///< collective_rpc default
  /// One execute_model (the seed's 300 s).
  std::chrono::milliseconds step_timeout = defaults::step_timeout;
  std::string channel = "auto"; ///< auto, nccl, tcp, gloo or shm (the seed's channel type)
  /// CPU TP groups' collectives: auto (shared memory when every rank of the group runs on
  /// one node, else the TCP mesh), shm, tcp or gloo (tests and comparisons). GPUs always
  /// use NCCL.
  std::string tp_transport = "auto";
  bool async_scheduling = false; ///< max_concurrent_batches = 2 instead of PP size
  /// A blocking execute_model on a same-node dataflow with nothing else in flight runs
  /// on the caller's thread, straight over the shared-memory rings (no actor hop); false
  /// sends every step through the driver actor (comparisons, tests).
  bool direct_lane = true;
  /// Same-node workers spin this long on their input ring after a step before they
  /// sleep, where every process of the dataflow has a core of its own: steps that come
  /// closer together skip a wake-up (tens of microseconds on a VM); an idle worker sleeps
  /// once it has passed. 0: never spin.
  std::chrono::microseconds hot_spin = defaults::hot_spin;
  std::string kv_connector; ///< "" (none) or "loopback" (every rank reports)
  liveness_options liveness;
  failure_policy on_worker_failure = failure_policy::fail;
  int max_restarts = 3; ///< restart: recoveries allowed before giving up
  /// Called on start()'s thread as each start-up phase begins: progress reports, and the
  /// hook `cafex chaos` injects start-up faults from. It runs inside start()'s deadline:
  /// return quickly, and never call into an executor from it. Empty (the default): never
  /// called, and start-up asks no worker for its pid.
  std::function<void(const startup_event&)> on_startup_phase;
  /// Called, from a thread of its own, with a progress line ("waiting for load_model on 4
  /// workers: 2.0 s so far, deadline in 58.0 s") for every start-up wait that lasts over
  /// a second, then every 3 s while it lasts. Empty (the default): no lines. `cafex run`
  /// prints them on stderr unless --quiet.
  std::function<void(const std::string&)> on_progress;
};

/// PP size, or 2 with async scheduling (the seed's max_concurrent_batches): how many steps
/// an executor started with `opts` runs at once.
size_t max_concurrent_batches(const executor_options& opts);

/// What a host sees of the executor as a whole.
///   starting: start() runs;  ready: every worker healthy;
///   degraded: some worker unresponsive or restarting (steps may fail);
///   failed: some worker dead (steps fail with worker_lost; restart the executor);
///   stopped: after shutdown().
enum class executor_state { starting, ready, degraded, failed, stopped };

const char* to_string(executor_state s);

/// What a step submitted past max_concurrent_batches does.
enum class when_full {
  wait, ///< waits for a free pipeline slot (the seed's behaviour)
  fail, ///< fails at once with errc::too_many_in_flight (a host that sheds load)
};

/// The executor state that a set of worker health reports amounts to.
executor_state summarize_health(const std::vector<worker_health>& workers);

/// A started executor. Create with start(); destroy or shutdown() to stop every worker.
class executor {
public:
  /// Runs the whole start-up: placement, workers, ranks, environment, init_worker,
  /// init_device, load_model. Never hangs: fails after options.start_timeout.
  static caf::expected<std::unique_ptr<executor>> start(executor_options options);

  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  /// Runs `method` on every worker (args as JSON; per-rank lists are picked by each
  /// worker's rank, as in the seed) and returns one JSON result per rank, or only
  /// `unique_reply_rank`'s when it is >= 0.
  caf::expected<std::vector<nlohmann::json>>
  collective_rpc(const std::string& method, const nlohmann::json& args = nullptr,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds::zero(),
                 int unique_reply_rank = -1);

  /// collective_rpc with non_block: the future holds the same result.
  std::future<caf::expected<std::vector<nlohmann::json>>>
  collective_rpc_async(const std::string& method, const nlohmann::json& args = nullptr,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds::zero(),
                       int unique_reply_rank = -1);

  /// One model step; blocks until the output arrives or the step deadline passes.
  caf::expected<model_runner_output> execute_model(const scheduler_output& step);

  /// execute_model with non_block: up to max_concurrent_batches() steps run at once and
  /// their futures complete in submission order. Past the limit the step waits for a
  /// slot (when_full::wait), or fails at once with errc::too_many_in_flight (when_full::fail).
  std::future<caf::expected<model_runner_output>>
  execute_model_async(const scheduler_output& step, when_full full = when_full::wait);

  /// execute_model with a completion handler, called exactly once with the result: from a
  /// CAF thread, or from the calling thread when the executor is already shut down (or
  /// shuts down before the step is handed to the driver). Never block in it: post to
  /// your own event loop (cafex/asio.hpp does this for Boost.Asio). Never blocks.
  void submit(const scheduler_output& step, when_full full,
              std::function<void(caf::expected<model_runner_output>)> done);

  /// PP size, or 2 with async scheduling (the seed's max_concurrent_batches).
  size_t max_concurrent_batches() const;

  /// Tears the compiled dataflow down (pending steps fail); the next step compiles it
  /// again.
  caf::error teardown_dataflow();

  /// Dataflow counters (in_flight, max_observed, dispatched, steps_ok, ...).
  caf::expected<nlohmann::json> dataflow_stats();

  /// The seed's reinitialize_distributed: every rank rebuilds its communicators under a
  /// new generation and drops its KV caches (pending steps fail; the next step compiles
  /// the dataflow again; hosts re-prefill live requests). With `shutdown_current_rank`
  /// (the seed's SHUTDOWN_CURRENT_RANK, when a deployment scales down and this replica
  /// leaves) the executor then shuts down.
  caf::error reinitialize_distributed(bool shutdown_current_rank = false);

  /// ready / degraded / failed / stopped, from check_health().
  executor_state state();

  /// Per-worker health as the driver sees it.
  caf::expected<std::vector<worker_health>> check_health();

  /// The plan the executor runs: ranks, nodes, environment, init method, grid.
  const rank_plan& plan() const;

  /// Stops every worker and the node agents this executor started. Idempotent.
  void shutdown();

private:
  struct impl;
  explicit executor(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
