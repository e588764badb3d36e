// The CAF configuration every cafex process shares: message types, error rendering,
// latency tuning and middleman heartbeats (set on both sides of every link).
#pragma once

#include <chrono>

#include <caf/actor_system_config.hpp>

#include "actors/liveness_options.hpp"

namespace cafex {

/// A CAF config with cafex's message types, the io module and tuned scheduling.
class system_config : public caf::actor_system_config {
public:
  explicit system_config(const liveness_options& live = {});
};

} // namespace cafex
