#include "runtime/plan/resource_ledger.hpp"

#include <fmt/format.h>

#include "runtime/error.hpp"

namespace cafex {

resource_ledger::resource_ledger(std::vector<int> device_ids) : ids_(std::move(device_ids)) {
  for (int id : ids_)
    free_[id] = device_units;
}

std::vector<int64_t> resource_ledger::free_units() const {
  std::vector<int64_t> out;
  for (int id : ids_)
    out.push_back(free_.at(id));
  return out;
}

caf::expected<uint64_t> resource_ledger::reserve(const std::string& owner,
                                                 const std::vector<bundle_claim>& claims,
                                                 const std::string& node_id) {
  if (claims.empty())
    return make_error(errc::invalid_argument, "a reservation needs at least one bundle");
  std::map<int, int64_t> need;
  for (const auto& c : claims) {
    if (free_.count(c.device_id) == 0)
      return make_error(errc::invalid_argument, "node " + node_id + " has no device "
                                                  + std::to_string(c.device_id)
                                                  + "; re-read its node_info");
    if (c.units <= 0 || c.units > device_units)
      return make_error(errc::invalid_argument, "bundle " + std::to_string(c.bundle_index)
                                                  + " asks for an invalid device share ("
                                                  + std::to_string(c.units) + " units of "
                                                  + std::to_string(device_units) + ")");
    need[c.device_id] += c.units;
  }
  std::string missing;
  for (const auto& [dev, units] : need)
    if (free_[dev] < units)
      missing += (missing.empty() ? "" : ", ") + std::string("device ") + std::to_string(dev)
                 + " has "
                 + fmt::format("{:g}", static_cast<double>(free_[dev]) / device_units)
                 + " free, needs "
                 + fmt::format("{:g}", static_cast<double>(units) / device_units);
  if (!missing.empty())
    return make_error(errc::placement_failed,
                      "not enough free resources on node " + node_id + ": " + missing);
  for (const auto& [dev, units] : need)
    free_[dev] -= units;
  auto id = next_id_++;
  held_.emplace(id, reservation{owner, claims});
  return id;
}

int resource_ledger::release(const std::string& owner, uint64_t id) {
  int n = 0;
  for (auto i = held_.begin(); i != held_.end();) {
    if (i->second.owner != owner || (id != 0 && i->first != id)) {
      ++i;
      continue;
    }
    for (const auto& c : i->second.claims)
      free_[c.device_id] += c.units;
    i = held_.erase(i);
    ++n;
  }
  return n;
}

bool resource_ledger::holds(uint64_t id, int bundle_index, int device_id) const {
  auto i = held_.find(id);
  if (i == held_.end())
    return false;
  for (const auto& c : i->second.claims)
    if (c.bundle_index == bundle_index && c.device_id == device_id)
      return true;
  return false;
}

} // namespace cafex
