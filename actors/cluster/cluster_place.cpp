// Placement across the connected node agents: free resources from each agent, the pure
// place_bundles, reservations held by the dummy driver (with back-off while resources
// are missing), and one worker per selected bundle on its node's agent.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <thread>

#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/cluster/cluster_impl.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"

namespace cafex {

namespace {

int64_t units_of(double share) {
  return std::max<int64_t>(1, std::llround(share * 10000.0));
}

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream os;
  auto tenths = ms.count() / 100; // truncated to a tenth of a second on purpose
  os << static_cast<double>(tenths) / 10.0;
  return os.str();
}

// place_bundles speaks of GPUs; say the resource the user asked for.
std::string with_resource(std::string text, const std::string& name) {
  if (name == "GPU")
    return text;
  for (auto pos = text.find("GPU"); pos != std::string::npos; pos = text.find("GPU", pos))
    text.replace(pos, 3, name), pos += name.size();
  return text;
}

// The message of a cafex error without its "code: " prefix.
std::string text_of(const caf::error& err) {
  auto text = describe(err);
  auto prefix = std::string(to_string(code_of(err))) + ": ";
  return text.rfind(prefix, 0) == 0 ? text.substr(prefix.size()) : text;
}

} // namespace

caf::error cluster::impl::refresh(cluster_clock::time_point deadline) {
  for (auto& n : nodes) {
    auto info = ask<node_info>(n.agent, std::min(opts.connect_timeout, time_left(deadline)),
                               info_atom::value);
    if (!info)
      return make_error(errc::node_lost, "node " + n.info.node_id + " (" + n.info.ip
                                           + ") stopped answering: " + describe(info.error()));
    n.info = std::move(*info);
  }
  return caf::none;
}

caf::expected<std::vector<bundle>> cluster::impl::try_place(int want, int& slots,
                                                            bool ignore_reservations) {
  const auto need = units_of(opts.gpus_per_worker);
  cluster_spec spec;
  spec.driver_ip = driver_ip;
  slots = 0;
  for (const auto& n : nodes) {
    if (n.info.resource_name != opts.resource_name)
      continue; // this node offers another kind of device
    node_spec ns{n.info.node_id, n.info.ip, {}};
    for (size_t i = 0; i < n.info.device_ids.size(); ++i) {
      auto free = i < n.info.free_units.size() && !ignore_reservations ? n.info.free_units[i]
                                                                       : 10000;
      // place_bundles assumes whole free devices; a partly reserved device is offered
      // only when it still holds a bundle, and the agent's ledger has the last word.
      if (free >= need) {
        ns.gpu_ids.push_back(n.info.device_ids[i]);
        slots += static_cast<int>(free / need);
      }
    }
    spec.nodes.push_back(std::move(ns));
  }
  placement_request req;
  req.num_bundles = want;
  req.devices_per_bundle = opts.gpus_per_worker;
  req.strategy = opts.strategy;
  if (find_driver_node(spec) == nullptr)
    return make_error(errc::placement_failed,
                      "Cannot provide a placement group: the driver's node (" + driver_ip
                        + ") offers no " + opts.resource_name
                        + " devices; start its agent with that resource");
  return place_bundles(spec, req);
}

caf::error cluster::impl::hold(const std::vector<bundle>& placed,
                               cluster_clock::time_point deadline) {
  const auto need = units_of(opts.gpus_per_worker);
  std::map<std::string, std::vector<bundle_claim>> per_node;
  for (const auto& b : placed)
    per_node[b.node_id].push_back(bundle_claim{b.index, b.gpu_id, need});
  // The driver's node first: it is the one the seed's dummy worker holds.
  std::vector<node*> order;
  for (auto& n : nodes)
    if (per_node.count(n.info.node_id))
      order.push_back(&n);
  std::stable_sort(order.begin(), order.end(), [&](node* a, node* b) {
    return a->info.ip == driver_ip && b->info.ip != driver_ip;
  });
  for (auto* n : order) {
    auto id = ask<uint64_t>(dummy, std::min(opts.connect_timeout, time_left(deadline)),
                            hold_atom::value, n->agent, per_node[n->info.node_id]);
    if (!id) {
      release_all();
      return id.error();
    }
    n->reservation = *id;
  }
  return caf::none;
}

void cluster::impl::release_all() {
  caf::scoped_actor self{sys};
  self->request(dummy, defaults::release_timeout, release_atom::value)
    .receive([](int32_t) {}, [](caf::error&) {});
  for (auto& n : nodes)
    n.reservation = 0;
}

caf::error cluster::reserve(int world_size, std::chrono::steady_clock::time_point deadline) {
  auto& d = *impl_;
  const int want = std::max(d.opts.bundles, world_size);
  const auto t0 = cluster_clock::now();
  const auto give_up = std::min(deadline, t0 + d.opts.placement_timeout);
  auto backoff = defaults::placement_first_backoff;
  auto next_report = t0 + defaults::placement_first_report;
  for (;;) {
    if (auto err = d.refresh(deadline))
      return err;
    int slots = 0;
    auto placed = d.try_place(want, slots);
    caf::error why;
    if (placed) {
      auto idx = select_bundle_indices(*placed, world_size,
                                       d.opts.bundle_indices.empty() ? nullptr
                                                                     : &d.opts.bundle_indices);
      if (!idx)
        return idx.error();
      why = d.hold(*placed, deadline);
      if (!why) {
        d.bundles = std::move(*placed);
        d.indices = std::move(*idx);
        return caf::none;
      }
      if (code_of(why) != errc::placement_failed)
        return why; // lost agent, bad request: waiting does not help
    } else {
      why = placed.error();
      if (code_of(why) != errc::placement_failed)
        return why;
      // Impossible even with every device free (strict_spread over fewer nodes, more
      // devices than the nodes have, a resource no agent offers): say so at once.
      int capacity = 0;
      auto ever = d.try_place(want, capacity, true);
      if (!ever)
        return make_error(errc::placement_failed,
                          with_resource(text_of(ever.error()), d.opts.resource_name) + " (the "
                            + std::to_string(d.nodes.size())
                            + " node(s) present can never hold it: waiting would not help)");
    }
    auto now = cluster_clock::now();
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - t0);
    if (now >= give_up)
      return make_error(errc::placement_failed,
                        with_resource(text_of(why), d.opts.resource_name) + " (waited "
                          + seconds(waited) + " s of --placement-timeout "
                          + seconds(d.opts.placement_timeout) + " s)");
    if (now >= next_report) {
      const int missing = std::max(0, want - slots);
      // Enough free devices, but not where the strategy needs them (or held by another
      // driver's claim in between): say that, not "0 more".
      const auto what = missing > 0
                          ? fmt::format("{} more {} bundle(s) of {}", missing,
                                        d.opts.resource_name, d.opts.gpus_per_worker)
                          : fmt::format("{} {} bundle(s) of {} to fit the {} strategy ({} "
                                        "fit on the free devices, not together)",
                                        want, d.opts.resource_name, d.opts.gpus_per_worker,
                                        to_string(d.opts.strategy), slots);
      spdlog::warn("waiting for {} on {} node(s) ({} s of --placement-timeout {} s): {}", what,
                   d.nodes.size(), seconds(waited), seconds(d.opts.placement_timeout),
                   with_resource(text_of(why), d.opts.resource_name));
      next_report = now + defaults::placement_report_interval;
    }
    // Back-off between polls of the agents (not synchronisation: resources free up
    // when other drivers finish).
    std::this_thread::sleep_for(std::min(backoff, time_left(give_up)));
    backoff = std::min(backoff * 2, defaults::placement_max_backoff);
  }
}

caf::error cluster::spawn(int world_size, const std::string& log_level,
                          std::chrono::steady_clock::time_point deadline,
                          std::vector<worker_actor>& workers,
                          std::vector<std::string>& nodes) {
  auto& d = *impl_;
  if (static_cast<int>(d.indices.size()) != world_size)
    return make_error(errc::not_ready, "spawn before reserve");
  workers.assign(world_size, worker_actor{});
  nodes.assign(world_size, std::string{});
  std::vector<uint16_t> ports(world_size, 0);
  caf::scoped_actor self{d.sys};
  caf::error failure;
  using handle_t = decltype(self->request(d.dummy, std::chrono::milliseconds(1),
                                          spawn_atom::value, node_agent_actor{},
                                          spawn_request{}));
  std::vector<handle_t> handles;
  // Spawn every worker at once, then collect the handles in created-rank order.
  for (int rank = 0; rank < world_size; ++rank) {
    const auto& b = d.bundles[d.indices[rank]];
    auto* n = d.find(b.node_id);
    spawn_request req;
    req.created_rank = rank;
    req.bundle_index = b.index;
    req.device_ids = {b.gpu_id};
    req.log_level = log_level;
    req.profiler = d.opts.worker_profiler;
    req.register_timeout_ms = time_left(deadline).count();
    req.reservation = n->reservation;
    nodes[rank] = b.node_id;
    handles.push_back(self->request(d.dummy, time_left(deadline) + defaults::spawn_slack,
                                    spawn_atom::value, n->agent, req));
  }
  for (int rank = 0; rank < world_size; ++rank)
    handles[rank].receive(
      [&](worker_actor& w, uint16_t port) {
        workers[rank] = std::move(w);
        ports[rank] = port;
      },
      [&](caf::error& e) {
        if (!failure)
          failure = e == caf::sec::request_timeout
                      ? make_error(errc::timeout, "worker for rank " + std::to_string(rank)
                                                    + " did not start in time")
                      : e;
      });
  if (failure)
    return failure;
  // A direct connection to each remote worker: without it CAF routes every driver ->
  // worker message through the agent's process (one more hop, and a worker death is
  // only seen through the agent). The handle stays the same actor.
  for (int rank = 0; rank < world_size; ++rank)
    if (auto err = d.direct_route(workers[rank], nodes[rank], ports[rank], rank, deadline))
      return err;
  return caf::none;
}

} // namespace cafex

namespace cafex {

caf::error cluster::impl::direct_route(const worker_actor& w, const std::string& node_id,
                                       uint16_t port, int rank,
                                       cluster_clock::time_point deadline) {
  auto* n = find(node_id);
  if (!opts.direct_worker_routes || n == nullptr || n->local || port == 0)
    return caf::none;
  auto what = "worker for rank " + std::to_string(rank) + " on node " + n->info.node_id;
  // Through the worker's node agent's front door, naming the worker's route: the agent
  // passes the authenticated connection to the worker process itself.
  auto ptr = caf_connect(n->host, n->port, port, what,
                         std::min(opts.connect_timeout, time_left(deadline)));
  if (!ptr)
    return ptr.error();
  auto direct = caf::actor_cast<worker_actor>(std::move(*ptr));
  if (direct.address() != w.address())
    return make_error(errc::spawn_failed,
                      what + ": its direct route answers with another actor");
  return caf::none;
}

caf::expected<cluster::respawned>
cluster::impl::spawn_on(node& n, const bundle& b, uint64_t reservation, int rpc_rank,
                        const std::string& log_level, cluster_clock::time_point deadline) {
  spawn_request req;
  req.created_rank = rpc_rank;
  req.bundle_index = b.index;
  req.device_ids = {b.gpu_id};
  req.log_level = log_level;
  req.profiler = opts.worker_profiler;
  req.register_timeout_ms = time_left(deadline).count();
  req.reservation = reservation;
  caf::scoped_actor self{sys};
  caf::expected<respawned> out{caf::error{}};
  uint16_t port = 0;
  auto where = "restarting rank " + std::to_string(rpc_rank) + " on node " + n.info.node_id;
  self
    ->request(dummy, time_left(deadline) + defaults::spawn_slack, spawn_atom::value, n.agent,
              req)
    .receive(
      [&](worker_actor& w, uint16_t p) {
        out = respawned{std::move(w), n.info.node_id, n.info.ip, b.gpu_id, n.agent, false};
        port = p;
      },
      [&](caf::error& e) {
        if (e == caf::sec::request_timeout)
          out = make_error(errc::timeout, where + ": the worker did not start in time");
        else if (code_of(e) != errc::none)
          out = make_error(code_of(e), where + ": " + describe(e));
        else
          out = make_error(errc::node_lost,
                           where + ": its node agent is unreachable (" + sys.render(e) + ")");
      });
  if (!out)
    return out;
  if (auto err = direct_route(out->worker, n.info.node_id, port, rpc_rank, deadline))
    return err;
  return out;
}

caf::expected<cluster::respawned>
cluster::impl::respawn_elsewhere(const std::string& lost_node, int rpc_rank,
                                 const std::string& log_level,
                                 cluster_clock::time_point deadline) {
  const auto need = units_of(opts.gpus_per_worker);
  int next_index = 0;
  for (const auto& b : bundles)
    next_index = std::max(next_index, b.index + 1);
  std::string tried;
  // The driver's node first (as placement does), then the others in order.
  std::vector<node*> order;
  for (auto& n : nodes)
    if (n.info.node_id != lost_node && n.info.resource_name == opts.resource_name)
      order.push_back(&n);
  std::stable_sort(order.begin(), order.end(), [&](node* a, node* b) {
    return a->info.ip == driver_ip && b->info.ip != driver_ip;
  });
  for (auto* n : order) {
    auto info = ask<node_info>(n->agent, std::min(opts.connect_timeout, time_left(deadline)),
                               info_atom::value);
    if (!info) {
      tried += " " + n->info.node_id + " (unreachable)";
      continue;
    }
    n->info = std::move(*info);
    for (size_t i = 0; i < n->info.device_ids.size(); ++i) {
      auto free = i < n->info.free_units.size() ? n->info.free_units[i] : 10000;
      if (free < need)
        continue;
      bundle b{next_index, n->info.node_id, n->info.ip, n->info.device_ids[i]};
      auto id = ask<uint64_t>(dummy, std::min(opts.connect_timeout, time_left(deadline)),
                              hold_atom::value, n->agent,
                              std::vector<bundle_claim>{
                                bundle_claim{b.index, b.gpu_id, need}});
      if (!id)
        continue; // taken meanwhile: try the next device
      auto out = spawn_on(*n, b, *id, rpc_rank, log_level, deadline);
      if (!out)
        return out;
      out->moved = true;
      bundles.push_back(b);
      spdlog::warn("rank {} moved from lost node {} to node {} (bundle {}, device {})",
                   rpc_rank, lost_node, n->info.node_id, b.index, b.gpu_id);
      return out;
    }
    tried += " " + n->info.node_id + " (no free " + opts.resource_name + ")";
  }
  return make_error(errc::placement_failed,
                    "rank " + std::to_string(rpc_rank) + " lost its node " + lost_node
                      + " and no other node has a free " + opts.resource_name
                      + " for it:" + (tried.empty() ? std::string(" no other node") : tried)
                      + "; add a node or free a device, then restart the executor");
}

caf::expected<cluster::respawned>
cluster::respawn(int created_rank, int rpc_rank, const std::string& log_level,
                 std::chrono::steady_clock::time_point deadline, bool node_suspect) {
  auto& d = *impl_;
  if (created_rank < 0 || created_rank >= static_cast<int>(d.indices.size()))
    return make_error(errc::invalid_argument,
                      "respawn: no created rank " + std::to_string(created_rank));
  auto pos = static_cast<size_t>(d.indices[created_rank]);
  const auto b = d.bundles[pos];
  auto* n = d.find(b.node_id);
  // Is its node still there? (A cut link would otherwise hold the spawn until its deadline.)
  // A live agent answers in milliseconds; a lost one's request fails at once, or (link cut)
  // after this short bound rather than the whole connect timeout.
  const auto probe = std::min(
    {d.opts.connect_timeout,
     node_suspect ? defaults::respawn_probe_suspect : defaults::respawn_probe,
     time_left(deadline)});
  if (n != nullptr && !d.ask<node_info>(n->agent, probe, info_atom::value))
    n = nullptr;
  if (n != nullptr) {
    auto out = d.spawn_on(*n, b, n->reservation, rpc_rank, log_level, deadline);
    if (out || code_of(out.error()) != errc::node_lost)
      return out;
    spdlog::warn("node {} is lost ({}); looking for a free bundle elsewhere", b.node_id,
                 describe(out.error()));
  }
  auto out = d.respawn_elsewhere(b.node_id, rpc_rank, log_level, deadline);
  if (out)
    d.indices[created_rank] = static_cast<int>(d.bundles.size() - 1);
  return out;
}

} // namespace cafex
