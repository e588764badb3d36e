#include "cafex/executor.hpp"
#include "cafex/executor_impl.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/driver_actor.hpp"
#include "actors/node_agent_actor.hpp"
#include "runtime/os/child_process.hpp"
#include "runtime/os/signals.hpp"
#include "actors/client_actor.hpp"
#include "runtime/logging.hpp"
#include "runtime/version.hpp"
#include "runtime/models/collective.hpp"
#include "transport/channel.hpp"
#include "transport/rendezvous_server.hpp"

namespace cafex {

namespace {

/// Every start-up error says that start-up failed and in which phase, whatever its
/// origin (a lost worker's error, say, would otherwise read as one of a running executor).
caf::error startup_failed(std::optional<startup_phase> phase, const caf::error& err) {
  if (code_of(err) == errc::none)
    return err; // not a cafex error: no text of ours to add to
  const auto& ctx = err.context();
  std::string text = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0) : "";
  return make_error(code_of(err), std::string("start-up failed")
                                    + (phase ? std::string(" in ") + to_string(*phase) : "")
                                    + ": " + text);
}

} // namespace

namespace {

std::string join_addresses(const std::vector<std::string>& nodes) {
  std::string out;
  for (const auto& n : nodes)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

/// What a start-up phase waits for, as its progress lines say it.
std::string awaited(startup_phase p, int world) {
  const auto n = std::to_string(world) + " worker(s)";
  switch (p) {
    case startup_phase::placement: return "placement: free devices on the node agents";
    case startup_phase::spawn_workers: return "the " + n + " to start and register";
    case startup_phase::rank_workers: return "the node and GPU ids of " + n;
    case startup_phase::update_environment: return "update_environment_variables on " + n;
    case startup_phase::init_worker: return "init_worker on " + n;
    case startup_phase::init_device: return "init_device (devices, TP groups) on " + n;
    case startup_phase::load_model: return "load_model on " + n;
    case startup_phase::compile_dataflow: return "the dataflow's channels on " + n;
  }
  return to_string(p);
}

} // namespace

void executor::impl::begin_phase(startup_phase p, clock::time_point deadline) {
  phase = p;
  ticker.reset();
  if (opts.on_progress)
    ticker = std::make_unique<progress_ticker>(opts.on_progress,
                                               awaited(p, opts.parallel.world_size()),
                                               deadline);
  if (!opts.on_startup_phase)
    return;
  startup_event ev;
  ev.phase = p;
  if (p >= startup_phase::update_environment) {
    // Ranked by now: the pids by rank, asked once (only a hook needs them).
    if (worker_pids.empty())
      if (auto info = rpc("process_info", "null", time_left(deadline))) {
        for (const auto& s : *info) {
          auto j = nlohmann::json::parse(s, nullptr, false);
          worker_pids.push_back(j.is_object() ? j.value("pid", int64_t{-1}) : -1);
        }
      }
    ev.worker_pids = worker_pids;
  }
  opts.on_startup_phase(ev);
}

caf::error executor::impl::start_up() {
  auto deadline = clock::now() + opts.start_timeout;
  struct end_of_waits {
    std::unique_ptr<progress_ticker>& t;
    ~end_of_waits() { t.reset(); }
  } stop_ticking{ticker};
  if (opts.parallel.tensor_parallel_size < 1 || opts.parallel.pipeline_parallel_size < 1)
    return make_error(errc::invalid_argument,
                      "tensor and pipeline parallel sizes must be at least 1");
  if (opts.worker_program.empty())
    opts.worker_program = self_executable();
  auto co = opts.cluster;
  co.strategy = opts.strategy;
  co.bundles = opts.bundles;
  co.bundle_indices = opts.bundle_indices;
  co.host_ip = opts.host_ip;
  nodes = std::make_unique<cluster>(sys, co);
  if (!co.nodes.empty()) {
    // Remote node agents (cafex node): connect, check versions, settle the driver IP.
    if (opts.on_progress)
      ticker = std::make_unique<progress_ticker>(opts.on_progress,
                                                 "the node agent(s) at "
                                                   + join_addresses(co.nodes) + " to answer",
                                                 deadline);
    if (auto err = nodes->connect(deadline))
      return err;
    ticker.reset();
    opts.host_ip = nodes->driver_ip();
  } else if (auto err = start_embedded_agent()) {
    return err;
  }
  auto channel = parse_channel_type(opts.channel);
  if (!channel)
    return channel.error();
  if (auto err = check_tp_transport(opts.tp_transport))
    return err;
  if (!opts.kv_connector.empty() && opts.kv_connector != "loopback")
    return make_error(errc::invalid_argument, "unknown KV connector '" + opts.kv_connector
                                                + "'; use loopback or none");
  driver_options dopts;
  dopts.default_rpc_timeout = opts.rpc_timeout;
  dopts.step_timeout = opts.step_timeout;
  dopts.max_concurrent_batches = cafex::max_concurrent_batches(opts);
  dopts.channel = to_string(resolve_channel_type(*channel, opts.device));
  dopts.kv_connector = opts.kv_connector;
  dopts.channel_timeout = opts.start_timeout;
  dopts.rebuild_timeout = defaults::teardown_timeout + opts.start_timeout
                          + 2 * defaults::driver_slack;
  dopts.liveness = opts.liveness;
  if (opts.direct_lane)
    dopts.lane = lane;
  if (opts.hot_spin.count() < 0 || opts.hot_spin > std::chrono::seconds{1})
    return make_error(errc::invalid_argument, "hot_spin must be between 0 and 1 s (got "
                                                + std::to_string(opts.hot_spin.count())
                                                + " us)");
  dopts.hot_spin = opts.hot_spin;
  if (opts.on_worker_failure == failure_policy::restart) {
    dopts.on_recover = [this](int32_t rank, std::string why) {
      request_recovery(rank, std::move(why));
    };
    recovery_thread = std::thread([this] { recovery_loop(); });
  }
  driver = sys.spawn(driver_impl, dopts);
  client = spawn_client(sys, driver, opts.step_timeout + defaults::driver_slack);
  if (auto err = place_and_spawn(deadline))
    return err;
  return configure(deadline);
}

caf::error executor::impl::start_embedded_agent() {
  if (opts.host_ip.empty())
    opts.host_ip = "127.0.0.1";
  int devices = opts.devices > 0 ? opts.devices : opts.parallel.world_size();
  // The embedded default: one node agent in this process that declares logical devices.
  node_agent_options ao;
  ao.info.node_id = make_node_id();
  ao.info.ip = opts.host_ip;
  for (int i = 0; i < devices; ++i)
    ao.info.device_ids.push_back(i);
  ao.info.device_kind = opts.device;
  ao.info.resource_name = opts.cluster.resource_name;
  ao.info.version = version();
  ao.worker_program = opts.worker_program;
  // No port: each worker reaches this agent through a socketpair made when it is spawned.
  agent = sys.spawn(node_agent_impl, ao);
  spdlog::info("node agent {} in this process with {} device(s)", ao.info.node_id, devices);
  return nodes->add_local(agent, opts.host_ip);
}

caf::error executor::impl::place_and_spawn(clock::time_point deadline) {
  auto world = opts.parallel.world_size();
  // Placement group across the nodes (reservations held by the dummy driver), then one
  // worker per selected bundle on its node's agent.
  begin_phase(startup_phase::placement, deadline);
  if (auto err = nodes->reserve(world, deadline))
    return err;
  begin_phase(startup_phase::spawn_workers, deadline);
  std::vector<worker_actor> workers;
  std::vector<std::string> node_ids;
  if (auto err = nodes->spawn(world, opts.log_level, deadline, workers, node_ids))
    return err;
  auto ok = ask<bool>(driver, time_left(deadline), workers_atom::value, workers, node_ids,
                      int32_t{opts.parallel.tensor_parallel_size},
                      int32_t{opts.parallel.pipeline_parallel_size});
  if (!ok)
    return ok.error();
  // The driver asks these agents how a lost worker ended (signal, exit code).
  std::vector<node_agent_actor> agents;
  agents.reserve(node_ids.size());
  for (const auto& id : node_ids)
    agents.push_back(nodes->agent_of(id));
  auto told = ask<bool>(driver, time_left(deadline), agents_atom::value, agents);
  return told ? caf::none : told.error();
}

executor::executor(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

executor::~executor() = default;

caf::expected<std::unique_ptr<executor>> executor::start(executor_options options) {
  // Before anything logs: the level (also a check of it, before any worker gets it), and
  // stderr or the host's sink. A cafex program that named its role (serve) keeps it.
  if (auto err = init_logging(options.log_level, logging_role(), options.log_sink))
    return err;
  // The driver (or host) must outlive a worker that dies mid-write: EPIPE, not SIGPIPE.
  ignore_sigpipe();
  auto p = std::make_unique<impl>(std::move(options));
  if (auto err = p->start_up()) {
    p->shutdown();
    return startup_failed(p->phase, err);
  }
  return std::unique_ptr<executor>(new executor(std::move(p)));
}

caf::expected<std::vector<nlohmann::json>>
executor::collective_rpc(const std::string& method, const nlohmann::json& args,
                         std::chrono::milliseconds timeout, int unique_reply_rank) {
  if (impl_->stopped)
    return make_error(errc::not_ready, "collective_rpc after shutdown");
  if (timeout.count() <= 0)
    timeout = impl_->opts.rpc_timeout;
  auto text = args.dump();
  // On a compiled same-node dataflow the call goes straight over the rings (every rank
  // answers; a unique_reply_rank keeps one); else, or when the lane is busy, through
  // the driver actor.
  std::optional<caf::expected<std::vector<std::string>>> direct;
  if (unique_reply_rank < static_cast<int>(impl_->plan.workers.size()))
    if (auto path = impl_->lane->get())
      direct = path->lane().call(method, text, timeout);
  if (direct && *direct && unique_reply_rank >= 0)
    **direct = std::vector<std::string>{(**direct)[static_cast<size_t>(unique_reply_rank)]};
  rpc_options ro;
  ro.unique_reply_rank = unique_reply_rank;
  auto r = direct ? std::move(*direct) : impl_->rpc(method, text, timeout, std::move(ro));
  if (!r)
    return r.error();
  std::vector<nlohmann::json> out;
  for (auto& s : *r)
    out.push_back(nlohmann::json::parse(s));
  return out;
}

std::future<caf::expected<std::vector<nlohmann::json>>>
executor::collective_rpc_async(const std::string& method, const nlohmann::json& args,
                               std::chrono::milliseconds timeout, int unique_reply_rank) {
  return std::async(std::launch::async, [this, method, args, timeout, unique_reply_rank] {
    return collective_rpc(method, args, timeout, unique_reply_rank);
  });
}

caf::expected<model_runner_output> executor::execute_model(const scheduler_output& step) {
  // The direct lane when the dataflow is idle: the caller's thread writes the step into
  // the rings and waits for the output rank's report (see actors/driver_lane.hpp).
  if (!impl_->stopped && impl_->async_pending->load() == 0)
    if (auto path = impl_->lane->get())
      if (auto out = path->lane().run(step))
        return std::move(*out);
  return execute_model_async(step).get();
}

std::future<caf::expected<model_runner_output>>
executor::execute_model_async(const scheduler_output& step, when_full full) {
  using result = caf::expected<model_runner_output>;
  auto prom = std::make_shared<std::promise<result>>();
  auto fut = prom->get_future();
  if (impl_->stopped) {
    prom->set_value(make_error(errc::not_ready, "execute_model after shutdown"));
    return fut;
  }
  submit(step, full,
         [prom](caf::expected<model_runner_output> r) { prom->set_value(std::move(r)); });
  return fut;
}

void executor::submit(const scheduler_output& step, when_full full,
                      std::function<void(caf::expected<model_runner_output>)> done) {
  if (impl_->stopped) {
    done(make_error(errc::not_ready, "execute_model after shutdown"));
    return;
  }
  // The callback is owned by a message; if that message is dropped (the client quit in a
  // shutdown racing this call), the last copy's destructor still answers the caller.
  struct once {
    std::function<void(caf::expected<model_runner_output>)> fn;
    std::shared_ptr<std::atomic<int>> pending;
    bool called = false;
    void call(caf::expected<model_runner_output> r) {
      called = true;
      --*pending; // before the caller hears it: its next blocking call may go direct
      fn(std::move(r));
    }
    ~once() {
      if (!called && fn)
        call(make_error(errc::not_ready, "the executor shut down before the step ran"));
    }
  };
  auto o = std::make_shared<once>();
  o->fn = std::move(done);
  o->pending = impl_->async_pending;
  ++*o->pending;
  step_callback cb = [o](caf::expected<model_runner_output> r) {
    if (!o->called)
      o->call(std::move(r));
  };
  // One mailbox keeps the caller's submission order all the way to the driver.
  caf::anon_send(impl_->client, execute_atom::value, step, full == when_full::fail,
                 std::move(cb));
}

size_t executor::max_concurrent_batches() const {
  return cafex::max_concurrent_batches(impl_->opts);
}

size_t max_concurrent_batches(const executor_options& opts) {
  return opts.async_scheduling ? 2 : static_cast<size_t>(opts.parallel.pipeline_parallel_size);
}

caf::error executor::teardown_dataflow() {
  if (impl_->stopped)
    return make_error(errc::not_ready, "teardown after shutdown");
  // Through the client: steps submitted before this call reach the driver before it.
  auto closed = impl_->ask<bool>(impl_->client, defaults::teardown_timeout,
                                 teardown_atom::value);
  if (!closed)
    return closed.error();
  // Steps were in flight: the TP ranks may stand at different collectives, so the driver
  // had them close their communicators; rebuild them (the KV caches go with them).
  return *closed ? impl_->rebuild_after_teardown() : caf::none;
}

caf::error executor::impl::rebuild_after_teardown() {
  auto err = rebuild_communicators();
  // Steps submitted since the teardown wait in the driver until it hears this.
  auto told = ask<bool>(driver, defaults::driver_query_timeout, rebuilt_atom::value,
                        err ? describe(err) : std::string{});
  if (!told && !err)
    return told.error();
  return err;
}

caf::error executor::impl::rebuild_communicators() {
  int gen = 0;
  {
    std::lock_guard<std::mutex> guard{recovery_mtx};
    gen = ++comm_generation;
  }
  fence_rendezvous(gen);
  nlohmann::json args = {{"generation", gen}, {"timeout_ms", opts.start_timeout.count()}};
  auto r = rpc("reinitialize_distributed", args.dump(), opts.start_timeout);
  return r ? caf::none : r.error();
}

caf::expected<nlohmann::json> executor::dataflow_stats() {
  if (impl_->stopped)
    return make_error(errc::not_ready, "dataflow_stats after shutdown");
  auto r = impl_->ask<std::string>(impl_->driver, defaults::driver_query_timeout,
                                   stats_atom::value);
  if (!r)
    return r.error();
  return nlohmann::json::parse(*r);
}

caf::error executor::reinitialize_distributed(bool shutdown_current_rank) {
  auto& d = *impl_;
  if (d.stopped)
    return make_error(errc::not_ready, "reinitialize_distributed after shutdown");
  // Pending steps fail (the dataflow is rebuilt with the new communicators).
  auto torn = d.ask<bool>(d.client, defaults::teardown_timeout, teardown_atom::value,
                          recover_atom::value);
  if (!torn)
    return torn.error();
  if (auto err = d.rebuild_after_teardown())
    return err;
  // The seed's SHUTDOWN_CURRENT_RANK: this executor leaves the (scaled-down) deployment.
  if (shutdown_current_rank)
    shutdown();
  return caf::none;
}

executor_state executor::state() {
  if (impl_->stopped)
    return executor_state::stopped;
  auto health = check_health();
  if (!health)
    return executor_state::failed;
  return summarize_health(*health);
}

executor_state summarize_health(const std::vector<worker_health>& workers) {
  bool degraded = false;
  for (const auto& w : workers) {
    if (w.state == health_state::dead)
      return executor_state::failed;
    if (w.state != health_state::healthy)
      degraded = true;
  }
  return degraded ? executor_state::degraded : executor_state::ready;
}

const char* to_string(startup_phase p) {
  switch (p) {
    case startup_phase::placement: return "placement";
    case startup_phase::spawn_workers: return "spawn_workers";
    case startup_phase::rank_workers: return "rank_workers";
    case startup_phase::update_environment: return "update_environment";
    case startup_phase::init_worker: return "init_worker";
    case startup_phase::init_device: return "init_device";
    case startup_phase::load_model: return "load_model";
    case startup_phase::compile_dataflow: return "compile_dataflow";
  }
  return "?";
}

const char* to_string(executor_state s) {
  switch (s) {
    case executor_state::starting: return "starting";
    case executor_state::ready: return "ready";
    case executor_state::degraded: return "degraded";
    case executor_state::failed: return "failed";
    case executor_state::stopped: return "stopped";
  }
  return "?";
}

caf::expected<std::vector<worker_health>> executor::check_health() {
  if (impl_->stopped)
    return make_error(errc::not_ready, "check_health after shutdown");
  return impl_->ask<std::vector<worker_health>>(impl_->driver, defaults::driver_query_timeout,
                                                health_atom::value);
}

const rank_plan& executor::plan() const {
  return impl_->plan;
}

void executor::shutdown() {
  impl_->shutdown();
}

} // namespace cafex
