// The dummy driver's protocol: hold placement-group reservations on node agents on the
// driver's behalf, and release them.
#pragma once

#include <cstdint>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/node_agent_protocol.hpp"

namespace cafex {

using dummy_driver_actor = caf::typed_actor<
  /// (hold, agent, bundles): reserves the bundles on that agent as this actor, so the
  /// agent releases them when this actor (the driver process) goes away; answers the
  /// reservation id, or the agent's error (placement_failed names what is missing).
  caf::replies_to<hold_atom, node_agent_actor, std::vector<bundle_claim>>::with<uint64_t>,
  /// Releases every reservation held; answers how many agents were told.
  caf::replies_to<release_atom>::with<int32_t>,
  /// (spawn, agent, request): starts a worker owned by this actor, so that the agent
  /// stops it when the driver process goes away; answers the agent's reply.
  caf::replies_to<spawn_atom, node_agent_actor, spawn_request>::with<worker_actor, uint16_t>,
  /// Stops every worker this actor started, on every agent it used; answers how many.
  caf::replies_to<kill_atom>::with<int32_t>>;

} // namespace cafex
