// A worker's health as the driver reports it: a state, the cause when it was lost, and
// text for humans. A public type header: only small CAF headers, no actor system.
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "runtime/failure_cause.hpp"

namespace cafex {

/// One worker's state. On the wire CAF 0.17 writes an enum as its underlying integer
/// (data_processor's enum overload; a user inspect() for an enum is ambiguous with it in
/// 0.17), so the values are fixed: never renumber them.
enum class health_state : uint8_t {
  healthy = 0,
  /// No heartbeat, or its node unreachable; the process may still live.
  unresponsive = 1,
  /// The process ended (the cause names the signal or exit code), or recovery gave up.
  dead = 2,
  /// Lost and being replaced (restart policy).
  restarting = 3,
  /// Alive, rebuilding its communicators during a recovery.
  rebuilding = 4,
};

/// "healthy", "unresponsive", "dead", "restarting", "rebuilding": the names that
/// `cafex-serve` exports and logs print.
const char* to_string(health_state s);

/// Every state, in wire order (for exporters that list each state, even at zero).
inline constexpr health_state all_health_states[] = {health_state::healthy,
                                                     health_state::unresponsive,
                                                     health_state::dead,
                                                     health_state::restarting,
                                                     health_state::rebuilding};

/// Alive: healthy, or rebuilding its communicators. Anything else is a rank to replace.
inline bool is_alive(health_state s) {
  return s == health_state::healthy || s == health_state::rebuilding;
}

/// The state of a lost worker: dead (its process ended, or nobody knows) or unresponsive
/// (it may live: no heartbeat, its node unreachable, its link just dropped).
health_state health_state_of(const failure_cause& c);

/// One worker's health as the driver sees it.
struct worker_health {
  int32_t rank = 0;
  std::string node_id;
  health_state state = health_state::healthy;
  /// Why it was lost (kind::none while it is alive). Code decides on this, never on detail.
  failure_cause cause{failure_cause::kind::none};
  /// For humans only: how it ended and what the driver does about it.
  std::string detail;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_health& x) {
  return f(caf::meta::type_name("cafex::worker_health"), x.rank, x.node_id, x.state, x.cause,
           x.detail);
}

} // namespace cafex
