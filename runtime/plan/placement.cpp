#include "runtime/plan/placement.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>

#include "runtime/error.hpp"

namespace cafex {

namespace {

// Capacity in fixed-point units, as Ray does, so 10 x 0.1 fills a GPU exactly instead
// of leaving 1e-16 free or falling 1e-16 short.
constexpr long long unit = 10000;

struct node_state {
  const node_spec* spec = nullptr;
  std::vector<int> gpus;       // sorted numerically
  std::vector<long long> free; // per gpu, in units

  int slots(long long need) const {
    long long n = 0;
    for (auto f : free)
      n += f / need;
    return static_cast<int>(n);
  }

  // First GPU (lowest id) with room, so one GPU fills before the next.
  int take(long long need) {
    for (size_t i = 0; i < gpus.size(); ++i)
      if (free[i] >= need) {
        free[i] -= need;
        return gpus[i];
      }
    return -1;
  }
};

std::string fmt_num(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

// Python's repr of a list of ints, as the seed's message prints bundle_indices.
std::string py_list(const std::vector<int>& xs) {
  return fmt::format("[{}]", fmt::join(xs, ", "));
}

} // namespace

const char* to_string(placement_strategy x) {
  switch (x) {
    case placement_strategy::pack: return "pack";
    case placement_strategy::spread: return "spread";
    case placement_strategy::strict_pack: return "strict_pack";
    case placement_strategy::strict_spread: return "strict_spread";
  }
  return "unknown";
}

caf::expected<placement_strategy> parse_placement_strategy(const std::string& text) {
  std::string lower;
  for (char c : text)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto s : {placement_strategy::pack, placement_strategy::spread,
                 placement_strategy::strict_pack, placement_strategy::strict_spread})
    if (lower == to_string(s))
      return s;
  return make_error(errc::invalid_argument,
                    "unknown placement strategy '" + text
                      + "'; valid values are pack, spread, strict_pack, strict_spread");
}

caf::expected<std::vector<bundle>> place_bundles(const cluster_spec& cluster,
                                                 const placement_request& req) {
  if (req.num_bundles < 1)
    return make_error(errc::invalid_argument, "a placement group needs at least 1 bundle, got "
                                                + std::to_string(req.num_bundles));
  if (!(req.devices_per_bundle > 0.0 && req.devices_per_bundle <= 1.0))
    return make_error(errc::invalid_argument,
                      "devices per bundle must be in (0, 1], got "
                        + fmt_num(req.devices_per_bundle)
                        + "; a worker uses at most one whole GPU (e.g. 1 or 0.5)");
  const long long need = std::max(1LL, std::llround(req.devices_per_bundle
                                                    * static_cast<double>(unit)));
  const std::string what = "Cannot provide a placement group of "
                           + std::to_string(req.num_bundles)
                           + " bundles {GPU: " + fmt_num(req.devices_per_bundle)
                           + "} with strategy " + to_string(req.strategy) + ": ";
  const std::string advice = "; add nodes/GPUs, lower --tp/--pp, or change --strategy";

  // Node order for every strategy: the driver's node, then file order.
  std::vector<node_state> nodes;
  const node_spec* driver = find_driver_node(cluster);
  if (driver == nullptr)
    return make_error(errc::invalid_config, "driver_ip " + cluster.driver_ip
                                              + " is not the ip of any node; add the "
                                                "driver's node or fix driver_ip");
  auto add = [&](const node_spec& n) {
    node_state st;
    st.spec = &n;
    st.gpus = n.gpu_ids;
    std::sort(st.gpus.begin(), st.gpus.end());
    st.free.assign(st.gpus.size(), unit);
    nodes.push_back(std::move(st));
  };
  add(*driver);
  for (const auto& n : cluster.nodes)
    if (&n != driver)
      add(n);
  if (nodes.front().slots(need) == 0)
    return make_error(errc::placement_failed,
                      what + "the driver's node \"" + driver->node_id + "\" (" + driver->ip
                        + ") has no GPU, but bundle 0 must be on it; give it a GPU or "
                          "run the driver on a GPU node");

  int total_slots = 0;
  int total_gpus = 0;
  std::string per_node;
  for (const auto& n : nodes) {
    total_slots += n.slots(need);
    total_gpus += static_cast<int>(n.gpus.size());
    per_node += (per_node.empty() ? "" : ", ") + n.spec->node_id + ": "
                + std::to_string(n.gpus.size());
  }
  const std::string free_text = "the cluster has " + std::to_string(total_gpus)
                                + " free GPUs (" + per_node + ") holding "
                                + std::to_string(total_slots) + " such bundles";

  std::vector<bundle> out;
  auto place = [&](node_state& n) {
    bundle b;
    b.index = static_cast<int>(out.size());
    b.node_id = n.spec->node_id;
    b.ip = n.spec->ip;
    b.gpu_id = n.take(need);
    out.push_back(std::move(b));
  };
  const int want = req.num_bundles;

  switch (req.strategy) {
    case placement_strategy::pack: {
      if (total_slots < want)
        return make_error(errc::placement_failed, what + free_text + "; missing "
                                                    + std::to_string(want - total_slots)
                                                    + " bundle(s)" + advice);
      // Fewest nodes: after the driver's node, biggest nodes first (stable: file order).
      std::stable_sort(nodes.begin() + 1, nodes.end(),
                       [&](const node_state& a, const node_state& b) {
                         return a.slots(need) > b.slots(need);
                       });
      for (auto& n : nodes)
        while (static_cast<int>(out.size()) < want && n.slots(need) > 0)
          place(n);
      break;
    }
    case placement_strategy::spread: {
      if (total_slots < want)
        return make_error(errc::placement_failed, what + free_text + "; missing "
                                                    + std::to_string(want - total_slots)
                                                    + " bundle(s)" + advice);
      size_t cursor = 0;
      while (static_cast<int>(out.size()) < want) {
        while (nodes[cursor].slots(need) == 0)
          cursor = (cursor + 1) % nodes.size();
        place(nodes[cursor]);
        cursor = (cursor + 1) % nodes.size();
      }
      break;
    }
    case placement_strategy::strict_pack: {
      auto& n = nodes.front();
      int have = n.slots(need);
      if (have < want)
        return make_error(errc::placement_failed,
                          what + "strict_pack puts every bundle on the driver's node \""
                            + n.spec->node_id + "\" (" + n.spec->ip + "), which has "
                            + std::to_string(n.gpus.size()) + " GPUs holding "
                            + std::to_string(have) + "; " + free_text + "; missing "
                            + std::to_string(want - have) + " bundle(s)" + advice);
      for (int i = 0; i < want; ++i)
        place(n);
      break;
    }
    case placement_strategy::strict_spread: {
      std::vector<node_state*> usable;
      std::string names;
      for (auto& n : nodes)
        if (n.slots(need) > 0) {
          usable.push_back(&n);
          names += (names.empty() ? "" : ", ") + n.spec->node_id;
        }
      int have = static_cast<int>(usable.size());
      if (have < want)
        return make_error(errc::placement_failed,
                          what + "strict_spread needs " + std::to_string(want)
                            + " distinct nodes with a free GPU, the cluster has "
                            + std::to_string(have) + " (" + names + "); missing "
                            + std::to_string(want - have) + " node(s)" + advice);
      for (int i = 0; i < want; ++i)
        place(*usable[i]);
      break;
    }
  }
  return out;
}

caf::expected<std::vector<int>> select_bundle_indices(const std::vector<bundle>& bundles,
                                                      int world_size,
                                                      const std::vector<int>* user_indices) {
  if (world_size < 1)
    return make_error(errc::invalid_argument,
                      "world size must be at least 1, got " + std::to_string(world_size));
  const int n = static_cast<int>(bundles.size());
  if (user_indices == nullptr) {
    // The seed takes the first world_size bundles that have a device; all of ours do.
    if (n < world_size)
      return make_error(errc::invalid_argument,
                        "the placement group has " + std::to_string(n)
                          + " bundles but the world size is " + std::to_string(world_size)
                          + "; place at least world size (tp * pp) bundles");
    std::vector<int> out(static_cast<size_t>(world_size));
    for (int i = 0; i < world_size; ++i)
      out[static_cast<size_t>(i)] = i;
    return out;
  }
  const auto& idx = *user_indices;
  if (static_cast<int>(idx.size()) != world_size)
    return make_error(errc::invalid_argument,
                      "--bundle-indices must have the same size as the world size (tp * pp), "
                      "but got bundle_indices="
                        + py_list(idx) + " (" + std::to_string(idx.size())
                        + " entries) and world_size=" + std::to_string(world_size)
                        + "; give one bundle index per rank");
  std::map<int, int> seen;
  for (int i : idx)
    if (++seen[i] == 2)
      return make_error(
        errc::invalid_argument,
        "--bundle-indices cannot have duplicate values, but got bundle_indices=" + py_list(idx)
          + " (bundle " + std::to_string(i)
          + " is named twice); give each rank its own bundle");
  for (int i : idx)
    if (i < 0 || i >= n)
      return make_error(errc::invalid_argument,
                        "--bundle-indices: bundle index " + std::to_string(i)
                          + " is out of range; the placement group has " + std::to_string(n)
                          + " bundles (0.." + std::to_string(n - 1)
                          + "); use --bundles to place more");
  return idx;
}

} // namespace cafex
