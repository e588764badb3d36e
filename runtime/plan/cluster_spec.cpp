#include "runtime/plan/cluster_spec.hpp"

#include <algorithm>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace cafex {

namespace {

using json = nlohmann::json;

caf::error bad(std::string what) {
  return make_error(errc::invalid_config, "cluster file: " + std::move(what));
}

// "nodes[1] (node_id \"b\")" once the id is known, so users find the entry quickly.
std::string where(size_t i, const std::string& node_id) {
  std::string out = "nodes[" + std::to_string(i) + "]";
  if (!node_id.empty())
    out += " (node_id \"" + node_id + "\")";
  return out;
}

caf::expected<int> parse_gpu_id(const json& v, const std::string& ctx) {
  long long id = 0;
  if (v.is_number_integer()) {
    id = v.get<long long>();
  } else if (v.is_string()) {
    auto text = v.get<std::string>();
    char* end = nullptr;
    errno = 0;
    id = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0)
      return bad(ctx + " must be integers or integer strings, got \"" + text + "\"");
  } else {
    return bad(ctx + " must be integers or integer strings, got " + v.dump());
  }
  if (id < 0)
    return bad(ctx + " must not be negative, got " + std::to_string(id));
  if (id > 1000000)
    return bad(ctx + " holds an implausible GPU id " + std::to_string(id));
  return static_cast<int>(id);
}

caf::expected<node_spec> parse_node(const json& j, size_t i) {
  if (!j.is_object())
    return bad(where(i, "") + " must be an object with node_id, ip and gpu_ids");
  if (auto k = first_unknown_key(j, {"node_id", "ip", "gpu_ids"}); !k.empty())
    return bad(unknown_key_message(k, where(i, ""), {"node_id", "ip", "gpu_ids"}));
  node_spec out;
  auto id = j.find("node_id");
  if (id == j.end() || !id->is_string() || id->get<std::string>().empty())
    return bad(where(i, "") + ": \"node_id\" must be a non-empty string");
  out.node_id = id->get<std::string>();
  auto ip = j.find("ip");
  if (ip == j.end() || !ip->is_string())
    return bad(where(i, out.node_id) + ": \"ip\" must be a string such as \"10.0.0.2\"");
  out.ip = ip->get<std::string>();
  if (!is_ipv4(out.ip))
    return bad(where(i, out.node_id) + ": \"ip\" is not an IPv4 address: \"" + out.ip
               + "\"; write it as four dotted numbers such as 10.0.0.2");
  auto gpus = j.find("gpu_ids");
  if (gpus == j.end() || !gpus->is_array())
    return bad(where(i, out.node_id)
               + ": \"gpu_ids\" must be a list such as [0, 1] (use [] for none)");
  std::set<int> seen;
  for (const auto& g : *gpus) {
    auto gid = parse_gpu_id(g, where(i, out.node_id) + ": gpu_ids");
    if (!gid)
      return gid.error();
    if (!seen.insert(*gid).second)
      return bad(where(i, out.node_id) + ": gpu id " + std::to_string(*gid)
                 + " is listed twice; list each GPU once");
    out.gpu_ids.push_back(*gid);
  }
  return out;
}

} // namespace

std::string first_unknown_key(const nlohmann::json& object,
                              std::initializer_list<const char*> known) {
  if (!object.is_object())
    return {};
  for (const auto& item : object.items())
    if (std::none_of(known.begin(), known.end(),
                     [&](const char* k) { return item.key() == k; }))
      return item.key();
  return {};
}

std::string unknown_key_message(const std::string& key, const std::string& where,
                                std::initializer_list<const char*> known) {
  std::string valid;
  for (const char* k : known)
    valid += (valid.empty() ? "" : ", ") + std::string(k);
  return "unknown key \"" + key + "\" in " + where + "; valid keys: " + valid
         + " (fix the spelling or drop it)";
}

bool is_ipv4(const std::string& text) {
  int parts = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t dot = text.find('.', pos);
    if (dot == std::string::npos)
      dot = text.size();
    auto part = text.substr(pos, dot - pos);
    // No signs, spaces or leading zeros: "010" is octal to some parsers.
    if (part.empty() || part.size() > 3
        || part.find_first_not_of("0123456789") != std::string::npos
        || (part.size() > 1 && part[0] == '0') || std::stoi(part) > 255)
      return false;
    ++parts;
    pos = dot + 1;
    if (dot == text.size())
      break;
  }
  return parts == 4;
}

const node_spec* find_driver_node(const cluster_spec& spec) {
  for (const auto& n : spec.nodes)
    if (n.ip == spec.driver_ip)
      return &n;
  return nullptr;
}

caf::expected<cluster_spec> parse_cluster_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return bad("malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what()
               + "; fix the syntax");
  }
  if (!j.is_object())
    return bad("the top level must be an object with \"driver_ip\" and \"nodes\"");
  if (auto k = first_unknown_key(j, {"driver_ip", "nodes"}); !k.empty())
    return bad(unknown_key_message(k, "the top level", {"driver_ip", "nodes"}));
  cluster_spec out;
  auto drv = j.find("driver_ip");
  if (drv == j.end() || !drv->is_string())
    return bad("\"driver_ip\" must be a string: the IP of the node the driver runs on");
  out.driver_ip = drv->get<std::string>();
  if (!is_ipv4(out.driver_ip))
    return bad("\"driver_ip\" is not an IPv4 address: \"" + out.driver_ip
               + "\"; write it as four dotted numbers such as 10.0.0.1");
  auto nodes = j.find("nodes");
  if (nodes == j.end() || !nodes->is_array())
    return bad("\"nodes\" must be a list of {node_id, ip, gpu_ids} objects");
  if (nodes->empty())
    return bad("\"nodes\" is empty; list at least the driver's node");
  std::map<std::string, size_t> by_id;
  std::map<std::string, std::string> id_by_ip;
  for (size_t i = 0; i < nodes->size(); ++i) {
    auto n = parse_node((*nodes)[i], i);
    if (!n)
      return n.error();
    if (!by_id.emplace(n->node_id, i).second)
      return bad(where(i, n->node_id) + ": node_id \"" + n->node_id
                 + "\" is already used by nodes[" + std::to_string(by_id[n->node_id])
                 + "]; node ids must be unique");
    // The rank planner maps IPs to nodes, so one IP per node is a hard requirement.
    auto [it, fresh] = id_by_ip.emplace(n->ip, n->node_id);
    if (!fresh)
      return bad("nodes \"" + it->second + "\" and \"" + n->node_id + "\" share the IP "
                 + n->ip + "; every node needs its own IP address");
    out.nodes.push_back(std::move(*n));
  }
  const auto* driver = find_driver_node(out);
  if (driver == nullptr)
    return bad("driver_ip " + out.driver_ip
               + " is not the ip of any node; add the driver's node or fix driver_ip");
  if (driver->gpu_ids.empty())
    return bad("the driver's node \"" + driver->node_id + "\" (" + driver->ip
               + ") has no GPU, but it must hold bundle 0; give it a GPU or run the "
                 "driver on a GPU node");
  return out;
}

caf::expected<cluster_spec> load_cluster_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(errc::invalid_config, "cannot read cluster file '" + path
                                              + "'; check the path given to --cluster");
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad())
    return make_error(errc::invalid_config, "error reading cluster file '" + path + "'");
  // A directory opens but reads nothing; say that rather than "malformed JSON".
  if (os.str().empty())
    return make_error(errc::invalid_config, "cluster file '" + path
                                              + "' is empty or not a regular file; "
                                                "pass a JSON cluster description");
  auto out = parse_cluster_json(os.str());
  if (!out) {
    // Name the path instead of the generic "cluster file" the parser says.
    const auto& ctx = out.error().context();
    std::string detail = ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                                           : describe(out.error());
    const std::string generic = "cluster file: ";
    if (detail.compare(0, generic.size(), generic) == 0)
      detail.erase(0, generic.size());
    return make_error(errc::invalid_config, "cluster file '" + path + "': " + detail);
  }
  return out;
}

} // namespace cafex
