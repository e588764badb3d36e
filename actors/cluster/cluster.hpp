// The driver's view of the cluster: connects to node agents (remote ones through a
// bounded, version-checked and optionally authenticated link, or the embedded one in
// this process), builds the placement group across them with real reservations held by
// the dummy-driver actor, and spawns one worker per bundle on its node's agent.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/node_agent_protocol.hpp"
#include "runtime/plan/placement.hpp"
#include "transport/link_security.hpp"

namespace cafex {

/// How the driver finds node agents and places bundles. Defaults: the README's.
struct cluster_options {
  std::vector<std::string> nodes;       ///< HOST:PORT of each node agent (empty: embedded)
  std::string host_ip;                  ///< the driver's IP (empty: the interface facing the nodes)
  link_security security;               ///< token / TLS (must match the agents')
  placement_strategy strategy = placement_strategy::pack;
  int bundles = 0;                      ///< placement group size (0: world size)
  std::vector<int> bundle_indices;      ///< the seed's VLLM_RAY_BUNDLE_INDICES
  std::string worker_profiler;          ///< "" or "nsys": agents wrap worker processes
  double gpus_per_worker = 1.0;         ///< share of one device per bundle, in (0, 1]
  std::string resource_name = "GPU";    ///< what a bundle asks for (custom accelerators)
  std::chrono::milliseconds connect_timeout{10000};    ///< per node agent
  std::chrono::milliseconds placement_timeout{60000};  ///< waiting for free resources
  bool direct_worker_routes = true;     ///< connect to remote workers directly
};

/// Reads a cluster config file into `into` (fields not yet set there):
///   {"nodes": ["10.0.0.1:7100", {"address": "10.0.0.2:7100"}], "driver_ip": "10.0.0.1",
///    "token_file": "/etc/cafex/token", "tls_cert": .., "tls_key": .., "tls_ca": ..}
caf::error load_cluster_config(const std::string& path, cluster_options& into);

/// Parses "HOST:PORT"; errc::invalid_argument names `what` and the text.
caf::error parse_host_port(const std::string& text, const std::string& what, std::string& host,
                           uint16_t& port);

/// The local address of the interface that routes to `peer_ip` (UDP connect, getsockname).
caf::expected<std::string> local_ip_facing(const std::string& peer_ip);

class cluster {
public:
  cluster(caf::actor_system& sys, cluster_options opts);
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Connects to every node agent in options.nodes (bounded by connect_timeout each),
  /// checks versions and node ids/IPs, and settles the driver IP.
  caf::error connect(std::chrono::steady_clock::time_point deadline);

  /// Uses an agent living in this process (the embedded default) as the only node.
  caf::error add_local(node_agent_actor agent, std::string driver_ip);

  const std::string& driver_ip() const;

  /// Places world_size bundles (or options.bundles) and reserves them on the agents;
  /// waits with back-off and progress lines while resources are missing, then fails with
  /// the seed's "Cannot provide a placement group ..." saying what is missing.
  caf::error reserve(int world_size, std::chrono::steady_clock::time_point deadline);

  /// Spawns one worker per selected bundle, in created-rank order; `nodes` gets each
  /// worker's node id.
  caf::error spawn(int world_size, const std::string& log_level,
                   std::chrono::steady_clock::time_point deadline,
                   std::vector<worker_actor>& workers, std::vector<std::string>& nodes);

  /// A worker started again for a lost rank.
  struct respawned {
    worker_actor worker;
    std::string node_id;
    std::string ip;
    int gpu_id = 0;
    node_agent_actor agent;
    bool moved = false;  ///< on a new bundle of another node (its node was lost)
  };

  /// Restart policy: starts a new worker on the bundle that created rank `created_rank`
  /// held (its reservation is still held), answering to method calls as `rpc_rank`.
  /// When that node's agent is gone, reserves a free bundle on another node (one device,
  /// as the placement group's bundles) and starts it there; placement_failed when no
  /// live node has a free device.
  /// `node_suspect`: the driver already saw that node's agent unreachable; its liveness
  /// probe then gets 200 ms instead of 2 s.
  caf::expected<respawned> respawn(int created_rank, int rpc_rank, const std::string& log_level,
                                   std::chrono::steady_clock::time_point deadline,
                                   bool node_suspect = false);

  /// The agent of the node with this id (an invalid handle when unknown).
  node_agent_actor agent_of(const std::string& node_id) const;

  /// Stops every worker, releases the reservations, closes the links. Idempotent.
  void shutdown();

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
