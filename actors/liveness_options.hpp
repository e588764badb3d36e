// How fast a cafex process notices a stopped, killed or cut-off peer. Public: a host
// sets these in executor_options::liveness; every process of a cluster needs the same.
#pragma once

#include <chrono>

#include "runtime/defaults.hpp"

namespace cafex {

/// Liveness settings; heartbeat_interval and connection_timeout must be the same in every
/// process of a cluster (one-sided settings drop healthy idle links).
struct liveness_options {
  /// Middleman heartbeat on every link (CAF's default, 0, never notices a stopped peer).
  std::chrono::milliseconds heartbeat_interval = defaults::heartbeat_interval;
  /// A link that hears nothing for this long is closed: a stopped or partitioned worker
  /// is reported "unresponsive" after about this long.
  std::chrono::milliseconds connection_timeout = defaults::connection_timeout;
  /// After a worker's link drops, how long the driver waits for its node agent to say how
  /// the process ended (exit code, signal) before failing its calls as "unreachable".
  std::chrono::milliseconds cause_timeout = defaults::cause_timeout;
};

} // namespace cafex
