// Plain structs that cross processes inside actor messages, with their inspect().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "runtime/defaults.hpp"
#include "runtime/health.hpp"               // worker_health travels in the driver protocol
#include "runtime/plan/resource_ledger.hpp" // bundle_claim

namespace cafex {

/// What a node agent tells about itself.
struct node_info {
  std::string node_id;
  std::string ip;
  std::vector<int> device_ids; ///< GPU ids, or logical device ids on CPU-only nodes
  std::string device_kind;     ///< "cuda" or "cpu"
  std::string version;
  std::string resource_name = "GPU"; ///< what a bundle asks for (the seed's ray_device_key)
  std::vector<int64_t> free_units;   ///< per device id: unreserved share, 10000 = one device
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("cafex::node_info"), x.node_id, x.ip, x.device_ids,
           x.device_kind, x.version, x.resource_name, x.free_units);
}

/// A driver asks a node agent to start one worker process for one bundle.
struct spawn_request {
  int32_t created_rank = 0;
  int32_t bundle_index = 0;
  std::vector<int> device_ids; ///< the bundle's GPU(s) on that node
  std::string log_level = "info";
  int64_t register_timeout_ms = defaults::worker_register_timeout.count();
  uint64_t reservation = 0; ///< the reservation holding the bundle (0: none, embedded)
  std::string profiler;     ///< "" or "nsys" (the seed's ray_workers_use_nsight)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, spawn_request& x) {
  return f(caf::meta::type_name("cafex::spawn_request"), x.created_rank, x.bundle_index,
           x.device_ids, x.log_level, x.register_timeout_ms, x.reservation, x.profiler);
}

/// Options of one collective_rpc.
struct rpc_options {
  int64_t timeout_ms = 0;         ///< 0: the executor's default RPC timeout
  int32_t unique_reply_rank = -1; ///< >= 0: only that rank's result is returned
  std::vector<int32_t> ranks;     ///< only these ranks (empty: every rank); results in
                                  ///< this order
  bool recovery = false;          ///< issued by recovery: runs while the executor recovers
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rpc_options& x) {
  return f(caf::meta::type_name("cafex::rpc_options"), x.timeout_ms, x.unique_reply_rank,
           x.ranks, x.recovery);
}

} // namespace cafex
