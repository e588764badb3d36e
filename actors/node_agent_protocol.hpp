// The node agent's protocol: describe the node, start worker processes, accept their
// registration, stop them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/worker_protocol.hpp"
#include "runtime/failure_cause.hpp"

namespace cafex {

using node_agent_actor = caf::typed_actor<
  /// (version, driver's version) -> the agent's version; a message whose layout never
  /// changes, so that peers of different versions can tell each other which versions they
  /// run. A mismatch is refused naming both; a remote driver must pass this check before
  /// the agent reserves or spawns anything for it.
  caf::replies_to<version_atom, std::string>::with<std::string>,
  caf::replies_to<info_atom>::with<node_info>,
  /// What `cafex status` shows, as one JSON object (agent_status_json).
  caf::replies_to<status_atom>::with<std::string>,
  /// Reserves bundles for the sender (the agent monitors it and releases them when it
  /// goes away); answers a reservation id, or placement_failed naming what is missing.
  /// The string names the driver for people: "driver on HOST, pid P, since TIME".
  caf::replies_to<reserve_atom, std::vector<bundle_claim>, std::string>::with<uint64_t>,
  /// Releases one of the sender's reservations (0: all of them).
  caf::replies_to<release_atom, uint64_t>::with<bool>,
  /// Starts one worker process; answers its handle once it registered, and its direct
  /// route: the target a driver names in the front door's handshake to reach the worker
  /// itself (0: none; reach it through the agent).
  caf::replies_to<spawn_atom, spawn_request>::with<worker_actor, uint16_t>,
  /// (register, spawn id, worker version, handle, serves a route: 1 or 0) from a worker
  /// process; answers the node id.
  caf::replies_to<register_atom, uint64_t, std::string, worker_actor,
                  uint16_t>::with<std::string>,
  /// Stops every worker this agent started for the sender (all of them when the sender
  /// lives in the agent's own process); answers how many.
  caf::replies_to<kill_atom>::with<int32_t>,
  /// (kill, worker key): SIGKILLs that one worker (a stopped or partitioned one that is
  /// being replaced) and answers how it ended once reaped (kind::unknown: this agent has
  /// no record of it, it was gone already).
  caf::replies_to<kill_atom, std::string>::with<failure_cause>,
  /// (cause, created rank, worker key "NODE#ID" from worker_key()): how that worker's
  /// process ended, once it has (killed, exited); unresponsive (stopped or not) when it
  /// still lives after a short wait (its link timed out); unknown when this agent never
  /// started it.
  caf::replies_to<cause_atom, int32_t, std::string>::with<failure_cause>,
  caf::reacts_to<reap_atom>>;

/// Identifies a worker actor across processes (actor ids repeat in every process).
inline std::string worker_key(const worker_actor& w) {
  return w ? caf::to_string(w.node()) + "#" + std::to_string(w.id()) : std::string{};
}

} // namespace cafex
