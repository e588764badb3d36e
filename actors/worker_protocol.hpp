// The worker's protocol: methods by name (JSON arguments and results, the seed's
// execute_method) and one model step.
#pragma once

#include <string>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "runtime/scheduler_output.hpp"

namespace cafex {

using worker_actor = caf::typed_actor<
  /// (call, method, JSON args) -> JSON result; unknown methods fail with unknown_method.
  caf::replies_to<call_atom, std::string, std::string>::with<std::string>,
  /// One step on this worker's stage (stage 0 without pipeline input).
  caf::replies_to<execute_atom, scheduler_output>::with<model_runner_output>>;

} // namespace cafex
