// The node agent's protocol: describe the node, start worker processes, accept their
// registration, stop them.
#pragma once

#include <cstdint>
#include <string>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/worker_protocol.hpp"

namespace cafex {

using node_agent_actor = caf::typed_actor<
  caf::replies_to<info_atom>::with<node_info>,
  /// Starts one worker process; answers its handle once it registered.
  caf::replies_to<spawn_atom, spawn_request>::with<worker_actor>,
  /// (register, spawn id, worker version, handle) from a worker process; answers the
  /// node id.
  caf::replies_to<register_atom, uint64_t, std::string, worker_actor>::with<std::string>,
  /// Stops every worker this agent started for the sender; answers how many.
  caf::replies_to<kill_atom>::with<int32_t>,
  caf::reacts_to<reap_atom>,
  /// (listen, host, port): where worker processes reach this agent; local senders only.
  caf::reacts_to<listen_atom, std::string, uint16_t>>;

} // namespace cafex
