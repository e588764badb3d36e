// Plain structs that cross processes inside actor messages, with their inspect().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cafex {

/// What a node agent tells about itself.
struct node_info {
  std::string node_id;
  std::string ip;
  std::vector<int> device_ids;   ///< GPU ids, or logical device ids on CPU-only nodes
  std::string device_kind;       ///< "cuda" or "cpu"
  std::string version;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("cafex::node_info"), x.node_id, x.ip, x.device_ids,
           x.device_kind, x.version);
}

/// A driver asks a node agent to start one worker process for one bundle.
struct spawn_request {
  int32_t created_rank = 0;
  int32_t bundle_index = 0;
  std::vector<int> device_ids;   ///< the bundle's GPU(s) on that node
  std::string log_level = "info";
  int64_t register_timeout_ms = 30000;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawn_request& x) {
  return f(caf::meta::type_name("cafex::spawn_request"), x.created_rank, x.bundle_index,
           x.device_ids, x.log_level, x.register_timeout_ms);
}

/// One worker's health as the driver sees it.
struct worker_health {
  int32_t rank = 0;
  std::string node_id;
  std::string state;   ///< "healthy", "unresponsive", "dead"
  std::string detail;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_health& x) {
  return f(caf::meta::type_name("cafex::worker_health"), x.rank, x.node_id, x.state,
           x.detail);
}

/// Options of one collective_rpc.
struct rpc_options {
  int64_t timeout_ms = 0;          ///< 0: the executor's default RPC timeout
  int32_t unique_reply_rank = -1;  ///< >= 0: only that rank's result is returned
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rpc_options& x) {
  return f(caf::meta::type_name("cafex::rpc_options"), x.timeout_ms, x.unique_reply_rank);
}

} // namespace cafex
