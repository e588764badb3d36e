// The worker actor (the seed's RayWorkerWrapper): runs methods by name and its stage of
// the compiled dataflow for one rank, and quits when its node agent goes away.
#pragma once

#include <memory>

#include <caf/all.hpp>

#include "actors/node_agent_protocol.hpp"
#include "actors/worker_methods.hpp"
#include "actors/worker_protocol.hpp"
#include "actors/worker_call_loop.hpp"
#include "actors/worker_hot_loop.hpp"
#include "actors/worker_stage.hpp"

namespace cafex {

struct worker_actor_state {
  worker_state st;
  method_table methods;
  std::unique_ptr<worker_stage> stage;
  /// Guards the model runner between this actor's methods and the hot loop's thread.
  std::mutex runner_mutex;
  /// Declared after `stage`: destroyed (joined) first.
  std::unique_ptr<worker_hot_loop> hot;
  /// collective_rpc on the direct lane (same-node dataflow only); joined first.
  std::unique_ptr<worker_call_loop> calls;
  static inline const char* name = "cafex.worker";
};

/// Spawn detached: model steps and channel transfers block their thread.
worker_actor::behavior_type
worker_actor_impl(worker_actor::stateful_pointer<worker_actor_state> self, worker_state st,
                  method_table methods, const node_agent_actor& agent);

} // namespace cafex
