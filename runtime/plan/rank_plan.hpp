// Rank planning: given what each created worker reported (IP, node id, GPU ids), decide
// its final rank, local rank, environment and the distributed init method, exactly as
// the seed's _init_workers_ray does after the workers answer get_node_ip and
// get_node_and_gpu_ids. Pure: the driver actor sends the results (adjust_rank,
// update_environment_variables, init_worker) and the dry run prints them.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/plan/env_policy.hpp"

namespace cafex {

struct parallel_config {
  int tensor_parallel_size = 1;
  int pipeline_parallel_size = 1;
  int world_size() const { return tensor_parallel_size * pipeline_parallel_size; }
};

/// errc::invalid_argument when a size is below 1 (or the product is absurdly large);
/// an empty error otherwise.
caf::error validate(const parallel_config& cfg);

/// The seed's rule "every node should have a unique IP address": `node_ids` (the nodes
/// in the order they were seen) and the set of their IPs (plus the driver's) must have
/// the same size. errc::invalid_config with the seed's message otherwise. The rank plan
/// checks it on the workers' reports, the driver's cluster on the agents it reached.
caf::error check_unique_ips(const std::vector<std::string>& node_ids,
                            const std::set<std::string>& ips);

/// What one worker answered, indexed by the rank it was created with.
struct worker_report {
  int created_rank = 0;
  int bundle_index = 0;
  std::string ip;                   ///< get_node_ip
  std::string node_id;              ///< get_node_and_gpu_ids
  std::vector<std::string> gpu_ids; ///< strings, as Ray may give them
};

struct planned_worker {
  int rank = 0; ///< adjusted rank
  int created_rank = 0;
  int bundle_index = 0;
  std::string node_id;
  std::string ip;
  std::vector<int> gpu_ids;      ///< this worker's own GPUs, sorted numerically
  int local_rank = 0;            ///< index of rank among its node's ranks
  bool is_driver_worker = false; ///< rank % tp == 0
  env_map env;                   ///< update_environment_variables argument
};

struct rank_plan {
  std::vector<planned_worker> workers; ///< indexed by (adjusted) rank
  std::map<int, int> rerank;           ///< created rank -> adjusted rank (adjust_rank)
  std::string init_host;               ///< 127.0.0.1 on one node, else the driver's ip
  int init_port = 0;
  std::string distributed_init_method;       ///< "tcp://host:port"
  std::vector<std::vector<int>> pp_tp_ranks; ///< [pp][tp] = pp * tp_size + tp
};

/// The seed's rules:
///  - sort workers (stable) by (0 if ip == driver_ip else 1, workers on that ip, ip);
///    the position is the adjusted rank;
///  - per node id: its ranks and its GPU ids, converted to int (error if one is not an
///    integer) and sorted numerically ("10" after "9"); duplicates from GPU-sharing
///    workers are listed once;
///  - distinct node ids must equal distinct IPs among workers plus driver_ip, else
///    errc::invalid_config with the seed's "Every node should have a unique IP" text;
///  - env = {device_env_var: the node's GPU ids joined by ","} plus env_to_copy (the
///    device variable wins);
///  - init host 127.0.0.1 when all workers share one node, else driver_ip;
///  - local_rank = position of the rank in its node's rank list;
///    is_driver_worker = rank % tp == 0; pp_tp_ranks[p][t] = p * tp + t.
/// errc::invalid_argument when the reports do not number cfg.world_size(), are not
/// indexed by created rank, or init_port is not in 1..65535.
/// Recovery on another node: `rank` keeps its rank, but now runs on `node_id` / `ip` with
/// `gpu_id`. Its device variable lists the GPUs of that node's ranks plus its own (sorted,
/// once each), its local rank comes after the ranks already there; the other variables
/// are kept. The init method is unchanged (a moved rank needs a store reachable across
/// nodes: errc::invalid_config when the plan's store is on loopback).
caf::expected<planned_worker>
plan_moved_rank(const rank_plan& plan, int rank, const std::string& node_id,
                const std::string& ip, int gpu_id,
                const std::string& device_env_var = "CUDA_VISIBLE_DEVICES");

caf::expected<rank_plan>
plan_ranks(const std::vector<worker_report>& by_created_rank, const std::string& driver_ip,
           const parallel_config& cfg, const env_map& env_to_copy, int init_port,
           const std::string& device_env_var = "CUDA_VISIBLE_DEVICES");

} // namespace cafex
