// The executor's client actor (local to the driver process): callers hand it steps with
// a completion callback; it forwards them to the driver in submission order (one mailbox,
// FIFO) and calls back from its own thread. No caller thread blocks on CAF.
#pragma once

#include <functional>

#include <caf/all.hpp>

#include "actors/driver_protocol.hpp"

namespace cafex {

using step_callback = std::function<void(caf::expected<model_runner_output>)>;

/// Spawns the client of `driver`; step answers arrive within `timeout` or fail.
caf::actor spawn_client(caf::actor_system& sys, const driver_actor& driver,
                        std::chrono::milliseconds timeout);

} // namespace cafex

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(cafex::step_callback)
