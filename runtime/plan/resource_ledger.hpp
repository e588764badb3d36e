// The node agent's resource ledger: how much of each device is free, and which owner
// (a driver's dummy-driver actor) holds which bundles. Pure bookkeeping, unit-tested
// without actors; the agent calls it from its handlers.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

namespace cafex {

/// One bundle of a placement group as a node agent reserves it: a share of one device.
struct bundle_claim {
  int32_t bundle_index = 0;
  int32_t device_id = 0;
  int64_t units = 10000; ///< 10000 = one whole device (fixed point, as Ray does)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bundle_claim& x) {
  return f(caf::meta::type_name("cafex::bundle_claim"), x.bundle_index, x.device_id, x.units);
}

/// One whole device in ledger units (fixed point, so 10 x 0.1 fills a device exactly).
constexpr int64_t device_units = 10000;

class resource_ledger {
public:
  struct reservation {
    std::string owner;
    std::vector<bundle_claim> claims;
  };

  resource_ledger() = default;
  explicit resource_ledger(std::vector<int> device_ids);

  /// Free units per device, in the order of the ids given at construction.
  std::vector<int64_t> free_units() const;

  /// Reserves every claim or none. errc::placement_failed names each device that lacks
  /// room; errc::invalid_argument for unknown devices or bad shares.
  caf::expected<uint64_t> reserve(const std::string& owner,
                                  const std::vector<bundle_claim>& claims,
                                  const std::string& node_id);

  /// Releases one reservation of `owner` (id 0: all of them); returns how many.
  int release(const std::string& owner, uint64_t id);

  /// True when reservation `id` holds `bundle_index` on `device_id`.
  bool holds(uint64_t id, int bundle_index, int device_id) const;

  size_t reservations() const { return held_.size(); }

  /// Every reservation by id (cafex status shows who holds what).
  const std::map<uint64_t, reservation>& held() const { return held_; }

private:
  std::vector<int> ids_;
  std::map<int, int64_t> free_; // device id -> free units
  std::map<uint64_t, reservation> held_;
  uint64_t next_id_ = 1;
};

} // namespace cafex
