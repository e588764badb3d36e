// The static description of a cluster: which nodes exist, their IPs and GPU ids, and
// which node the driver runs on. Read from a JSON file for dry runs (`cafex plan`) and
// tests; a live cluster builds the same struct from its node agents' reports.
//
//   {"driver_ip": "10.0.0.1",
//    "nodes": [{"node_id": "a", "ip": "10.0.0.1", "gpu_ids": [0, 1, 2, 3]},
//              {"node_id": "b", "ip": "10.0.0.2", "gpu_ids": ["0", "1"]}]}
//
// gpu_ids may be integers or integer strings (Ray reports either); both become int.
// Unknown keys are ignored so that other tools may annotate the file.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

namespace cafex {

struct node_spec {
  std::string node_id;
  std::string ip;
  std::vector<int> gpu_ids; ///< as listed in the file; placement uses them sorted
};

struct cluster_spec {
  std::string driver_ip; ///< the driver's node is the node with this ip
  std::vector<node_spec> nodes;
};

/// Parses and validates a cluster description. Every failure is errc::invalid_config
/// and names the field and node: malformed JSON (with its byte position), missing or
/// mistyped fields, an empty node list, duplicate node ids, two nodes sharing one IP,
/// negative or duplicate GPU ids, bad IPv4 text, a driver_ip that no node has, or a
/// driver node without GPUs (the driver node must hold bundle 0).
caf::expected<cluster_spec> parse_cluster_json(const std::string& text);

/// Reads `path` and parses it with parse_cluster_json; errors name the path.
caf::expected<cluster_spec> load_cluster_file(const std::string& path);

/// True for dotted-quad IPv4 text such as "10.0.0.1" (four decimal parts, 0..255).
bool is_ipv4(const std::string& text);

/// The first key of the JSON object `object` that is not in `known` (empty when all are):
/// cluster files refuse a misspelt key ("tokenfile") instead of silently running without
/// what it meant.
std::string first_unknown_key(const nlohmann::json& object,
                              std::initializer_list<const char*> known);

/// "unknown key \"k\" in WHERE; valid keys: a, b, c".
std::string unknown_key_message(const std::string& key, const std::string& where,
                                std::initializer_list<const char*> known);

/// The node whose ip equals spec.driver_ip, or nullptr.
const node_spec* find_driver_node(const cluster_spec& spec);

} // namespace cafex
