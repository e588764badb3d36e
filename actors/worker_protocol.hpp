// The worker's protocol: methods by name (JSON arguments and results, the seed's
// execute_method) and its part of the compiled dataflow.
#pragma once

#include <string>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/dataflow_protocol.hpp"
#include "runtime/dataflow/scheduler_output.hpp"
#include "transport/tensor_desc.hpp"

namespace cafex {

using worker_actor = caf::typed_actor<
  /// (call, method, JSON args) -> JSON result; unknown methods fail with unknown_method.
  caf::replies_to<call_atom, std::string, std::string>::with<std::string>,
  /// Compile: learn the stage, open the channel to the next stage. Answers the transport
  /// of the rank's TP group ("shm", "gloo", "nccl", "solo").
  caf::replies_to<dag_atom, dag_config>::with<std::string>,
  /// Stage 0: run step `seq` from the scheduler output.
  caf::reacts_to<execute_atom, uint64_t, scheduler_output>,
  /// Later stages: the previous stage's output; the bytes arrive on the channel.
  caf::reacts_to<stage_atom, uint64_t, scheduler_output, tensor_desc>,
  /// Drop the dataflow (close channels).
  caf::replies_to<teardown_atom>::with<bool>,
  /// Drop the dataflow for a recovery: also close the TP communicator, so that a peer
  /// blocked in a collective this rank will never join fails now and lets go
  /// (reinitialize_distributed reopens it).
  caf::replies_to<teardown_atom, recover_atom>::with<bool>>;

} // namespace cafex
