// The CAF configuration every cafex process shares: message types, error rendering,
// latency tuning and middleman heartbeats (set on both sides of every link).
#pragma once

#include <chrono>

#include <caf/actor_system_config.hpp>

namespace cafex {

/// Liveness settings; heartbeat_interval and connection_timeout must be the same in every
/// process of a cluster (one-sided settings drop healthy idle links).
struct liveness_options {
  /// Middleman heartbeat on every link (CAF's default, 0, never notices a stopped peer).
  std::chrono::milliseconds heartbeat_interval{200};
  /// A link that hears nothing for this long is closed: a stopped or partitioned worker
  /// is reported "unresponsive" after about this long.
  std::chrono::milliseconds connection_timeout{2000};
  /// After a worker's link drops, how long the driver waits for its node agent to say how
  /// the process ended (exit code, signal) before failing its calls as "unreachable".
  std::chrono::milliseconds cause_timeout{500};
};

/// A CAF config with cafex's message types, the io module and tuned scheduling.
class system_config : public caf::actor_system_config {
public:
  explicit system_config(const liveness_options& live = {});
};

} // namespace cafex
