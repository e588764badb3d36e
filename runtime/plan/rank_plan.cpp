#include "runtime/plan/rank_plan.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <numeric>
#include <set>
#include <tuple>

#include "runtime/error.hpp"

namespace cafex {

namespace {

// Python's int(x): surrounding blanks allowed, otherwise an optionally signed integer.
bool to_int(const std::string& text, int& out) {
  auto b = text.find_first_not_of(" \t");
  auto e = text.find_last_not_of(" \t");
  if (b == std::string::npos)
    return false;
  auto core = text.substr(b, e - b + 1);
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(core.c_str(), &end, 10);
  if (*end != '\0' || errno != 0 || v < -2147483647L || v > 2147483647L)
    return false;
  out = static_cast<int>(v);
  return true;
}

// Python's repr of a list/set of strings, so the error reads like the seed's.
template <class Container>
std::string py_repr(const Container& xs, char open, char close) {
  std::string out(1, open);
  bool first = true;
  for (const auto& x : xs) {
    out += (first ? "'" : ", '") + x + "'";
    first = false;
  }
  return out + close;
}

} // namespace

caf::error validate(const parallel_config& cfg) {
  if (cfg.tensor_parallel_size < 1)
    return make_error(errc::invalid_argument, "tensor parallel size must be at least 1, got "
                                                + std::to_string(cfg.tensor_parallel_size)
                                                + "; pass --tp 1 or more");
  if (cfg.pipeline_parallel_size < 1)
    return make_error(errc::invalid_argument, "pipeline parallel size must be at least 1, got "
                                                + std::to_string(cfg.pipeline_parallel_size)
                                                + "; pass --pp 1 or more");
  // Guard world_size() against int overflow; no cluster has a million GPUs.
  if (static_cast<long long>(cfg.tensor_parallel_size) * cfg.pipeline_parallel_size > 1000000)
    return make_error(errc::invalid_argument,
                      "tensor x pipeline parallel size is implausibly large ("
                        + std::to_string(cfg.tensor_parallel_size) + " x "
                        + std::to_string(cfg.pipeline_parallel_size) + "); check --tp/--pp");
  return caf::error{};
}

caf::error check_unique_ips(const std::vector<std::string>& node_ids,
                            const std::set<std::string>& ips) {
  if (node_ids.size() == ips.size())
    return caf::none;
  return make_error(errc::invalid_config,
                    "Every node should have a unique IP address. Got "
                      + std::to_string(node_ids.size()) + " nodes with node ids "
                      + py_repr(node_ids, '[', ']') + " and " + std::to_string(ips.size())
                      + " unique IP addresses " + py_repr(ips, '{', '}')
                      + ". Please check your network configuration. If you set "
                        "CAFEX_HOST_IP/--host-ip, make sure it is unique for each node.");
}

caf::expected<rank_plan> plan_ranks(const std::vector<worker_report>& reports,
                                    const std::string& driver_ip, const parallel_config& cfg,
                                    const env_map& env_to_copy, int init_port,
                                    const std::string& device_env_var) {
  if (auto err = validate(cfg))
    return err;
  const int world = cfg.world_size();
  const int tp = cfg.tensor_parallel_size;
  if (static_cast<int>(reports.size()) != world)
    return make_error(errc::invalid_argument,
                      "world size is " + std::to_string(world) + " (tp " + std::to_string(tp)
                        + " x pp " + std::to_string(cfg.pipeline_parallel_size) + ") but "
                        + std::to_string(reports.size())
                        + " workers reported; create one worker per rank");
  for (int i = 0; i < world; ++i)
    if (reports[i].created_rank != i)
      return make_error(errc::invalid_argument,
                        "worker reports must be indexed by created rank: entry "
                          + std::to_string(i) + " has created rank "
                          + std::to_string(reports[i].created_rank));
  if (init_port < 1 || init_port > 65535)
    return make_error(errc::invalid_argument,
                      "init port must be in 1..65535, got " + std::to_string(init_port));

  std::map<std::string, int> ip_counts;
  for (const auto& r : reports)
    ++ip_counts[r.ip];
  // Driver node first, then nodes with fewer workers, then by IP string; stable, so
  // workers on one node keep their creation order.
  std::vector<int> order(reports.size());
  std::iota(order.begin(), order.end(), 0);
  auto key = [&](int i) {
    const auto& ip = reports[i].ip;
    return std::tuple<int, int, const std::string&>(ip == driver_ip ? 0 : 1, ip_counts[ip],
                                                    ip);
  };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });

  rank_plan plan;
  std::vector<std::string> node_ids; // first-seen order, like the seed's defaultdict
  std::map<std::string, std::vector<int>> node_workers;
  std::map<std::string, std::vector<int>> node_gpus;
  for (int rank = 0; rank < world; ++rank) {
    const auto& r = reports[order[rank]];
    plan.rerank[r.created_rank] = rank;
    planned_worker w;
    w.rank = rank;
    w.created_rank = r.created_rank;
    w.bundle_index = r.bundle_index;
    w.node_id = r.node_id;
    w.ip = r.ip;
    for (const auto& g : r.gpu_ids) {
      int id = 0;
      if (!to_int(g, id))
        return make_error(errc::invalid_argument,
                          "worker rank " + std::to_string(rank) + " (created rank "
                            + std::to_string(r.created_rank) + ") on node " + r.node_id
                            + " reported GPU id '" + g
                            + "', which is not an integer; check the node's device ids");
      w.gpu_ids.push_back(id);
    }
    // Numeric sort: as strings "10" would come before "9" (vLLM issue 5590).
    std::sort(w.gpu_ids.begin(), w.gpu_ids.end());
    if (node_workers.count(r.node_id) == 0)
      node_ids.push_back(r.node_id);
    node_workers[r.node_id].push_back(rank);
    auto& gpus = node_gpus[r.node_id];
    gpus.insert(gpus.end(), w.gpu_ids.begin(), w.gpu_ids.end());
    plan.workers.push_back(std::move(w));
  }
  for (auto& [node, gpus] : node_gpus) {
    std::sort(gpus.begin(), gpus.end());
    // Workers sharing a GPU (fractional bundles) report it twice; "0,0" would not be a
    // valid device list, so each GPU is listed once.
    gpus.erase(std::unique(gpus.begin(), gpus.end()), gpus.end());
  }

  std::set<std::string> all_ips{driver_ip};
  for (const auto& r : reports)
    all_ips.insert(r.ip);
  // The seed counts the driver's IP among the nodes' (and then reports non-unique IPs):
  // when no rank is on the driver's node the real cause is that, so it is named.
  if (ip_counts.count(driver_ip) == 0 && node_ids.size() + 1 == all_ips.size())
    return make_error(errc::invalid_config,
                      "no rank is placed on the driver's node (" + driver_ip
                        + "): the workers are on " + py_repr(node_ids, '[', ']')
                        + "; the driver's node must hold a rank (as the seed's driver "
                          "worker does): pick --bundle-indices that include one of its "
                          "bundles, or run the driver on a node that holds ranks");
  if (auto err = check_unique_ips(node_ids, all_ips))
    return err;

  for (auto& w : plan.workers) {
    w.env[device_env_var] = fmt::format("{}", fmt::join(node_gpus[w.node_id], ","));
    for (const auto& [name, value] : env_to_copy)
      w.env.emplace(name, value); // emplace keeps the device variable
    const auto& ranks = node_workers[w.node_id];
    w.local_rank = static_cast<int>(std::find(ranks.begin(), ranks.end(), w.rank)
                                    - ranks.begin());
    w.is_driver_worker = w.rank % tp == 0;
  }

  // One node: loopback always works, while the driver's chosen IP may not route
  // inside the node on multi-homed machines.
  plan.init_host = node_gpus.size() == 1 ? "127.0.0.1" : driver_ip;
  plan.init_port = init_port;
  plan.distributed_init_method = "tcp://" + plan.init_host + ":" + std::to_string(init_port);
  for (int p = 0; p < cfg.pipeline_parallel_size; ++p) {
    plan.pp_tp_ranks.emplace_back();
    for (int t = 0; t < tp; ++t)
      plan.pp_tp_ranks.back().push_back(p * tp + t);
  }
  return plan;
}

caf::expected<planned_worker>
plan_moved_rank(const rank_plan& plan, int rank, const std::string& node_id,
                const std::string& ip, int gpu_id, const std::string& device_env_var) {
  if (rank < 0 || rank >= static_cast<int>(plan.workers.size()))
    return make_error(errc::invalid_argument,
                      "plan_moved_rank: no rank " + std::to_string(rank));
  if (plan.init_host == "127.0.0.1" && plan.workers[rank].node_id != node_id)
    return make_error(errc::invalid_config,
                      "rank " + std::to_string(rank) + " cannot move to node " + node_id
                        + ": the rendezvous store listens on loopback (every worker was on "
                          "one node)");
  planned_worker w = plan.workers[rank];
  std::vector<int> gpus{gpu_id};
  int local = 0;
  for (const auto& other : plan.workers) {
    if (other.rank == rank || other.node_id != node_id)
      continue;
    gpus.insert(gpus.end(), other.gpu_ids.begin(), other.gpu_ids.end());
    ++local;
  }
  std::sort(gpus.begin(), gpus.end());
  gpus.erase(std::unique(gpus.begin(), gpus.end()), gpus.end());
  std::string devices;
  for (int g : gpus)
    devices += (devices.empty() ? "" : ",") + std::to_string(g);
  w.node_id = node_id;
  w.ip = ip;
  w.gpu_ids = {gpu_id};
  w.local_rank = local;
  w.env[device_env_var] = devices;
  return w;
}

} // namespace cafex
