// Private: the state behind cafex::cluster, shared by cluster.cpp (connection) and
// cluster_place.cpp (placement, reservation, spawning).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/blocking_ask.hpp"
#include "actors/dummy_driver_protocol.hpp"
#include "actors/cluster/cluster.hpp"
#include "transport/dialer.hpp"

namespace cafex {

using cluster_clock = std::chrono::steady_clock;

struct cluster::impl {
  struct node {
    std::string address; ///< as the user gave it ("" for the embedded agent)
    std::string host;
    uint16_t port = 0;
    node_agent_actor agent;
    node_info info;
    uint64_t reservation = 0;
    bool local = false;
  };

  caf::actor_system& sys;
  cluster_options opts;
  std::vector<node> nodes;
  std::unique_ptr<dialer> dial;
  dummy_driver_actor dummy;
  std::string driver_ip;
  std::vector<bundle> bundles;
  std::vector<int> indices;
  bool stopped = false;

  impl(caf::actor_system& s, cluster_options o) : sys(s), opts(std::move(o)) {}

  /// Blocking request with a deadline from the caller's thread (see blocking_ask).
  template <class R, class... Ts>
  caf::expected<R> ask(Ts&&... xs) {
    return blocking_ask<R>(sys, std::forward<Ts>(xs)...);
  }

  node* find(const std::string& node_id) {
    for (auto& n : nodes)
      if (n.info.node_id == node_id)
        return &n;
    return nullptr;
  }

  caf::error connect_one(const std::string& address, cluster_clock::time_point deadline);
  /// The token to prove to the agent at host:port (see local_token.hpp for loopback).
  caf::expected<std::string> token_for(const std::string& host, uint16_t port) const;
  caf::expected<caf::strong_actor_ptr> caf_connect(const std::string& host, uint16_t port,
                                                   uint16_t target, const std::string& what,
                                                   std::chrono::milliseconds timeout);
  caf::error check_nodes();
  caf::error refresh(cluster_clock::time_point deadline);
  /// Places `want` bundles on what the agents have free (`slots`: bundles that fit at all
  /// on the free devices); with `ignore_reservations`, on every device as if none were
  /// reserved: a request that fails then can never be placed on these nodes.
  caf::expected<std::vector<bundle>> try_place(int want, int& slots,
                                               bool ignore_reservations = false);
  caf::error hold(const std::vector<bundle>& placed, cluster_clock::time_point deadline);
  void release_all();
  /// Starts one worker for `rpc_rank` on bundle `b` of node `n` (recovery).
  caf::expected<cluster::respawned> spawn_on(node& n, const bundle& b, uint64_t reservation,
                                             int rpc_rank, const std::string& log_level,
                                             cluster_clock::time_point deadline);
  /// Reserves a free device on a live node other than `lost_node` and starts it there.
  caf::expected<cluster::respawned>
  respawn_elsewhere(const std::string& lost_node, int rpc_rank, const std::string& log_level,
                    cluster_clock::time_point deadline);
  /// Connects straight to a remote worker (see cluster::spawn).
  caf::error direct_route(const worker_actor& w, const std::string& node_id, uint16_t port,
                          int rank, cluster_clock::time_point deadline);
};

} // namespace cafex
