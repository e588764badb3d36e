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

#include "actors/cluster/cluster_options.hpp"
#include "actors/node_agent_protocol.hpp"
#include "runtime/plan/placement.hpp"
#include "transport/link_security.hpp"

namespace cafex {

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
    bool moved = false; ///< on a new bundle of another node (its node was lost)
  };

  /// Restart policy: starts a new worker on the bundle that created rank `created_rank`
  /// held (its reservation is still held), answering to method calls as `rpc_rank`.
  /// When that node's agent is gone, reserves a free bundle on another node (one device,
  /// as the placement group's bundles) and starts it there; placement_failed when no
  /// live node has a free device.
  /// `node_suspect`: the driver already saw that node's agent unreachable; its liveness
  /// probe then gets 200 ms instead of 2 s.
  caf::expected<respawned>
  respawn(int created_rank, int rpc_rank, const std::string& log_level,
          std::chrono::steady_clock::time_point deadline, bool node_suspect = false);

  /// For `cafex status`: connects to each agent of options.nodes on its own (one that
  /// cannot be reached does not hide the others) and asks it for its state. One JSON
  /// object per address, in order: the agent's fields (agent_status_json) plus "address",
  /// or {"address", "error"}.
  std::vector<std::string> status(std::chrono::steady_clock::time_point deadline);

  /// The agent of the node with this id (an invalid handle when unknown).
  node_agent_actor agent_of(const std::string& node_id) const;

  /// Stops every worker, releases the reservations, closes the links. Idempotent.
  void shutdown();

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
