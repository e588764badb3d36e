// The driver actor's protocol: hold the workers in rank order, fan out collective_rpc,
// run steps through the compiled dataflow (collecting what its stages report), answer
// health.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "actors/dataflow_protocol.hpp"
#include "actors/messages.hpp"
#include "actors/node_agent_protocol.hpp"
#include "actors/worker_protocol.hpp"
#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

using driver_actor = step_sink_actor::extend<
  /// (workers, handles by created rank, their node ids, tp, pp): take the workers over.
  caf::replies_to<workers_atom, std::vector<worker_actor>, std::vector<std::string>, int32_t,
                  int32_t>::with<bool>,
  /// (agents, node agent by created rank): who to ask how a lost worker ended.
  caf::replies_to<agents_atom, std::vector<node_agent_actor>>::with<bool>,
  /// (rerank, order): order[adjusted rank] = created rank.
  caf::replies_to<rerank_atom, std::vector<int32_t>>::with<bool>,
  /// (dag, store url, node ips by rank, same-node shared memory): where the dataflow's
  /// channels meet, and whether its hot path uses shared memory.
  caf::replies_to<dag_atom, std::string, std::vector<std::string>, bool>::with<bool>,
  /// collective_rpc: (rpc, method, JSON args, options) -> JSON result per rank.
  caf::replies_to<rpc_atom, std::string, std::string,
                  rpc_options>::with<std::vector<std::string>>,
  /// execute_model: (execute, step, fail_fast). Waits for a free pipeline slot unless
  /// fail_fast; answers in step order.
  caf::replies_to<execute_atom, scheduler_output, bool>::with<model_runner_output>,
  caf::reacts_to<deadline_atom, uint64_t>,
  /// Tears the compiled dataflow down; the next step compiles it again. True: steps were
  /// in flight, so the ranks closed their TP communicators too and they must be rebuilt.
  caf::replies_to<teardown_atom>::with<bool>,
  /// The same, and the ranks close their TP communicators whatever was in flight: the
  /// caller rebuilds them (reinitialize_distributed). Answers true.
  caf::replies_to<teardown_atom, recover_atom>::with<bool>,
  /// After a teardown that answered true: (rebuilt, why) the executor rebuilt the TP
  /// communicators (why empty) or could not (why says how). Steps submitted in between
  /// waited for this; they now compile and run, or fail with why. Answers false when no
  /// rebuild was awaited.
  caf::replies_to<rebuilt_atom, std::string>::with<bool>,
  /// The rebuild's deadline (self-sent with the teardown's rebuild number).
  caf::reacts_to<rebuilt_atom, uint64_t>,
  /// Dataflow counters as JSON text.
  caf::replies_to<stats_atom>::with<std::string>,
  caf::replies_to<health_atom>::with<std::vector<worker_health>>,
  /// Recovery: (kill, rank) SIGKILLs that rank's worker process through its node agent
  /// (a stopped or cut-off worker being replaced); answers how it ended.
  caf::replies_to<kill_atom, int32_t>::with<std::string>,
  /// Recovery: (replace, rank, new worker, its node id, its node's IP, its agent) installs
  /// a respawned worker at `rank`.
  caf::replies_to<replace_atom, int32_t, worker_actor, std::string, std::string,
                  node_agent_actor>::with<bool>,
  /// Recovery ended: (recovered, ok, why). ok: every rank is healthy again; else the lost
  /// ranks stay dead (why says what failed).
  caf::replies_to<recovered_atom, bool, std::string>::with<bool>,
  /// Stops every worker and quits.
  caf::replies_to<stop_atom>::with<bool>>;

} // namespace cafex
