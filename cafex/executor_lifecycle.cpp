// The seed's start-up lifecycle once the workers exist, one function per phase and in the
// seed's order: node and GPU ids, the rank plan (environment policy, rendezvous store),
// rerank, environment, init_worker, init_device, load_model, then the dataflow.
#include <set>

#include <spdlog/spdlog.h>

#include "cafex/executor_impl.hpp"
#include "runtime/plan/env_policy.hpp"
#include "transport/channel.hpp"

namespace cafex {

caf::error executor::impl::configure(clock::time_point deadline) {
  begin_phase(startup_phase::rank_workers, deadline);
  auto reports = collect_reports(deadline);
  if (!reports)
    return reports.error();
  if (auto err = plan_workers(*reports))
    return err;
  if (auto err = rerank_workers(deadline))
    return err;
  begin_phase(startup_phase::update_environment, deadline);
  if (auto err = update_environment(deadline))
    return err;
  begin_phase(startup_phase::init_worker, deadline);
  if (auto err = init_workers(deadline))
    return err;
  begin_phase(startup_phase::init_device, deadline);
  if (auto err = init_devices(deadline))
    return err;
  begin_phase(startup_phase::load_model, deadline);
  if (auto err = load_models(deadline))
    return err;
  begin_phase(startup_phase::compile_dataflow, deadline);
  return configure_dataflow(deadline);
}

caf::expected<std::vector<worker_report>>
executor::impl::collect_reports(clock::time_point deadline) {
  // Node and device ids as each worker sees them, in created-rank order.
  auto ips = rpc("get_node_ip", "null", time_left(deadline));
  if (!ips)
    return ips.error();
  auto ids = rpc("get_node_and_gpu_ids", "null", time_left(deadline));
  if (!ids)
    return ids.error();
  std::vector<worker_report> reports;
  for (int r = 0; r < opts.parallel.world_size(); ++r) {
    worker_report rep;
    rep.created_rank = r;
    rep.ip = nlohmann::json::parse((*ips)[r]).get<std::string>();
    auto pair = nlohmann::json::parse((*ids)[r]);
    rep.node_id = pair.at(0).get<std::string>();
    rep.gpu_ids = pair.at(1).get<std::vector<std::string>>();
    rep.bundle_index = -1;
    reports.push_back(std::move(rep));
  }
  return reports;
}

caf::error executor::impl::plan_workers(const std::vector<worker_report>& reports) {
  auto env = read_process_environment();
  auto to_copy = select_env_to_copy(env, default_env_policy(env));
  // The rendezvous store answers at distributed_init_method: loopback when every worker
  // is on one node (as the seed does), else the driver's address.
  std::set<std::string> node_ids;
  for (const auto& rep : reports)
    node_ids.insert(rep.node_id);
  rendezvous_server_options so;
  so.bind_address = node_ids.size() == 1 ? "127.0.0.1" : opts.host_ip;
  so.port = opts.rendezvous_port;
  store = std::make_unique<rendezvous_server>(so);
  if (auto err = store->start())
    return opts.rendezvous_port == 0
             ? err
             : make_error(errc::invalid_config,
                          "--rendezvous-port " + std::to_string(opts.rendezvous_port)
                            + ": the rendezvous store cannot listen on " + so.bind_address
                            + ":" + std::to_string(opts.rendezvous_port) + " (" + describe(err)
                            + "): pick a free port, or drop it for an ephemeral one");
  auto planned = plan_ranks(reports, opts.host_ip, opts.parallel, to_copy, store->port());
  if (!planned)
    return planned.error();
  plan = std::move(*planned);
  if (plan.init_host != so.bind_address)
    return make_error(errc::invalid_config, "rendezvous host " + so.bind_address
                                              + " differs from the planned " + plan.init_host);
  return caf::none;
}

caf::error executor::impl::rerank_workers(clock::time_point deadline) {
  // Rerank: created -> adjusted, on the workers and in the driver.
  nlohmann::json rerank = nlohmann::json::object();
  std::vector<int32_t> order(opts.parallel.world_size());
  for (auto& [created, adjusted] : plan.rerank) {
    rerank[std::to_string(created)] = adjusted;
    order[adjusted] = created;
  }
  if (auto r = rpc("adjust_rank", rerank.dump(), time_left(deadline)); !r)
    return r.error();
  if (auto r = ask<bool>(driver, time_left(deadline), rerank_atom::value, order); !r)
    return r.error();
  created_of = order;
  return caf::none;
}

caf::error executor::impl::update_environment(clock::time_point deadline) {
  envs = nlohmann::json::array();
  for (const auto& w : plan.workers)
    envs.push_back(w.env);
  auto r = rpc("update_environment_variables", envs.dump(), time_left(deadline));
  return r ? caf::none : r.error();
}

caf::error executor::impl::init_workers(clock::time_point deadline) {
  kwargs = nlohmann::json::array();
  nlohmann::json model = opts.model; // runtime/models/model_config.hpp
  for (const auto& w : plan.workers)
    kwargs.push_back({{"rank", w.rank},
                      {"local_rank", w.local_rank},
                      {"distributed_init_method", plan.distributed_init_method},
                      {"is_driver_worker", w.is_driver_worker},
                      {"tensor_parallel_size", opts.parallel.tensor_parallel_size},
                      {"pipeline_parallel_size", opts.parallel.pipeline_parallel_size},
                      {"device", opts.device},
                      {"tp_transport", opts.tp_transport},
                      {"init_timeout_ms", time_left(deadline).count()},
                      {"model", model}});
  auto r = rpc("init_worker", kwargs.dump(), time_left(deadline));
  return r ? caf::none : r.error();
}

caf::error executor::impl::init_devices(clock::time_point deadline) {
  auto r = rpc("init_device", "null", time_left(deadline));
  return r ? caf::none : r.error();
}

caf::error executor::impl::load_models(clock::time_point deadline) {
  auto r = rpc("load_model", "null", time_left(deadline));
  return r ? caf::none : r.error();
}

caf::error executor::impl::configure_dataflow(clock::time_point deadline) {
  std::vector<std::string> rank_ips;
  for (const auto& w : plan.workers)
    rank_ips.push_back(w.ip);
  // The same-node shared-memory hot path: asked for (shm), or chosen by auto for CPU
  // workers when every worker runs on the driver's machine.
  bool same_host = true;
  for (const auto& ip : rank_ips)
    same_host = same_host && ip == opts.host_ip;
  auto requested = parse_channel_type(opts.channel);
  if (!requested)
    return requested.error();
  bool use_shm = *requested == channel_type::shm
                 || (*requested == channel_type::automatic && same_host);
  if (*requested == channel_type::shm && !same_host)
    return make_error(errc::invalid_argument,
                      "--channel shm needs every worker on the driver's machine; use gloo or "
                      "auto across nodes");
  if (auto r = ask<bool>(driver, time_left(deadline), dag_atom::value,
                         plan.distributed_init_method, rank_ips, use_shm);
      !r)
    return r.error();
  spdlog::info("{} worker(s) ready: tp={} pp={} init={}", opts.parallel.world_size(),
               opts.parallel.tensor_parallel_size, opts.parallel.pipeline_parallel_size,
               plan.distributed_init_method);
  return caf::none;
}

} // namespace cafex
