// Placement: which GPU of which node each bundle (one worker's share of a device) takes.
// This is the part of a Ray placement group the seed relies on, computed up front from a
// cluster_spec so that a dry run and the live driver place bundles identically.
//
// Rules shared by every strategy:
//  - bundle 0 is always on the driver's node (the node whose ip == driver_ip): the seed
//    requires the driver node to hold a bundle, and rank planning puts it first;
//  - each GPU has capacity 1.0 and a bundle takes devices_per_bundle (0 < x <= 1) of
//    ONE GPU, so 0.5 lets two bundles share a GPU; a node's GPUs are filled in
//    increasing numeric id order, each before the next.
// Strategies (node order always starts with the driver's node):
//  - pack: as few nodes as possible: fill the driver node, then the nodes with the most
//    free capacity (ties: file order);
//  - spread: round robin over the nodes in file order, skipping full ones;
//  - strict_pack: every bundle on the driver node, or fail;
//  - strict_spread: every bundle on a distinct node, or fail.
#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "runtime/plan/cluster_spec.hpp"

namespace cafex {

enum class placement_strategy { pack, spread, strict_pack, strict_spread };

/// "pack", "spread", "strict_pack", "strict_spread".
const char* to_string(placement_strategy x);

/// Parses the names above (upper case such as "STRICT_PACK" is accepted too);
/// errc::invalid_argument lists the valid values.
caf::expected<placement_strategy> parse_placement_strategy(const std::string& text);

struct placement_request {
  int num_bundles = 1;
  double devices_per_bundle = 1.0; ///< the seed's VLLM_RAY_PER_WORKER_GPUS
  placement_strategy strategy = placement_strategy::pack;
};

struct bundle {
  int index = 0;
  std::string node_id;
  std::string ip;
  int gpu_id = 0;
};

/// Places request.num_bundles bundles; result[i].index == i.
/// errc::invalid_argument for a bad request (num_bundles < 1, devices_per_bundle
/// outside (0, 1]); errc::placement_failed, saying what is free and what is missing,
/// when the cluster cannot hold the bundles under the strategy.
caf::expected<std::vector<bundle>> place_bundles(const cluster_spec& cluster,
                                                 const placement_request& request);

/// The seed's bundle choice: the user's indices (our --bundle-indices, the seed's
/// VLLM_RAY_BUNDLE_INDICES) when given, which must number world_size, hold no
/// duplicates and lie in range; otherwise the first world_size bundles (every bundle
/// we place has a device). Errors are errc::invalid_argument.
caf::expected<std::vector<int>> select_bundle_indices(const std::vector<bundle>& bundles,
                                                      int world_size,
                                                      const std::vector<int>* user_indices);

} // namespace cafex
