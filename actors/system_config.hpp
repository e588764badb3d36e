// The CAF configuration every cafex process shares: message types, error rendering,
// latency tuning and middleman heartbeats (set on both sides of every link).
#pragma once

#include <chrono>

#include <caf/actor_system_config.hpp>

namespace cafex {

/// Liveness settings; the same values must be used by every process of a cluster.
struct liveness_options {
  std::chrono::milliseconds heartbeat_interval{200};
  std::chrono::milliseconds connection_timeout{2000};
};

/// A CAF config with cafex's message types, the io module and tuned scheduling.
class system_config : public caf::actor_system_config {
public:
  explicit system_config(const liveness_options& live = {});
};

} // namespace cafex
