// What a host sets to reach remote node agents and place bundles on them (the cluster
// orchestration itself is cluster.hpp, private to the library). Public: executor_options
// holds one.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "runtime/defaults.hpp"
#include "runtime/plan/placement.hpp"
#include "transport/link_security.hpp"

namespace cafex {

/// How the driver finds node agents and places bundles. Defaults: the README's.
struct cluster_options {
  std::vector<std::string> nodes; ///< HOST:PORT of each node agent (empty: embedded)
  std::string host_ip;            ///< the driver's IP (empty: the interface facing the nodes)
  link_security security;         ///< token / TLS (must match the agents')
  placement_strategy strategy = placement_strategy::pack;
  int bundles = 0;                   ///< placement group size (0: world size)
  std::vector<int> bundle_indices;   ///< the seed's VLLM_RAY_BUNDLE_INDICES
  std::string worker_profiler;       ///< "" or "nsys": agents wrap worker processes
  double gpus_per_worker = 1.0;      ///< share of one device per bundle, in (0, 1]
  std::string resource_name = "GPU"; ///< what a bundle asks for (custom accelerators)
  std::chrono::milliseconds connect_timeout = defaults::connect_timeout; ///< per node agent
  /// Waiting for free resources.
  std::chrono::milliseconds placement_timeout = defaults::placement_timeout;
  bool direct_worker_routes = true; ///< connect to remote workers directly
};

/// Reads a cluster config file into `into` (fields not yet set there):
///   {"nodes": ["10.0.0.1:7100", {"address": "10.0.0.2:7100"}], "driver_ip": "10.0.0.1",
///    "token_file": "/etc/cafex/token", "tls_cert": .., "tls_key": .., "tls_ca": ..}
caf::error load_cluster_config(const std::string& path, cluster_options& into);

/// Parses "HOST:PORT"; errc::invalid_argument names `what` and the text.
caf::error parse_host_port(const std::string& text, const std::string& what, std::string& host,
                           uint16_t& port);

} // namespace cafex
