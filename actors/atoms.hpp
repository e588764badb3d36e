// Atoms of the cafex actor protocols (CAF 0.17: at most 10 characters each).
#pragma once

#include <caf/atom.hpp>

namespace cafex {

using call_atom = caf::atom_constant<caf::atom("call")>;         ///< worker method by name
using execute_atom = caf::atom_constant<caf::atom("execute")>;   ///< one model step
using register_atom = caf::atom_constant<caf::atom("register")>; ///< worker -> node agent
using status_atom = caf::atom_constant<caf::atom("status")>;     ///< cafex status -> agent
using info_atom = caf::atom_constant<caf::atom("info")>;         ///< node description
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;       ///< start a worker process
using kill_atom = caf::atom_constant<caf::atom("kill")>;         ///< stop worker processes
using reap_atom = caf::atom_constant<caf::atom("reap")>;         ///< poll child processes
using workers_atom = caf::atom_constant<caf::atom("workers")>;   ///< set/get the worker list
using rpc_atom = caf::atom_constant<caf::atom("rpc")>;           ///< collective_rpc
using rerank_atom = caf::atom_constant<caf::atom("rerank")>;     ///< reorder workers
using health_atom = caf::atom_constant<caf::atom("health")>;     ///< check_health
using stop_atom = caf::atom_constant<caf::atom("stop")>;         ///< orderly shutdown
using hold_atom = caf::atom_constant<caf::atom("hold")>;         ///< dummy driver bundle
using version_atom = caf::atom_constant<caf::atom("version")>;   ///< peer version check
using reserve_atom = caf::atom_constant<caf::atom("reserve")>;   ///< reserve bundles
using release_atom = caf::atom_constant<caf::atom("release")>;   ///< release a reservation

using dag_atom = caf::atom_constant<caf::atom("dag")>;             ///< compile the dataflow
using stage_atom = caf::atom_constant<caf::atom("stage")>;         ///< stage k -> stage k+1
using result_atom = caf::atom_constant<caf::atom("result")>;       ///< a rank's step output
using progress_atom = caf::atom_constant<caf::atom("progress")>;   ///< a rank finished a step
using stepfail_atom = caf::atom_constant<caf::atom("stepfail")>;   ///< a rank failed a step
using lanefree_atom = caf::atom_constant<caf::atom("lanefree")>;   ///< the direct lane ended
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;   ///< a step's deadline
using teardown_atom = caf::atom_constant<caf::atom("teardown")>;   ///< drop the dataflow
using stats_atom = caf::atom_constant<caf::atom("stats")>;         ///< dataflow counters
using cause_atom = caf::atom_constant<caf::atom("cause")>;         ///< why a worker ended
using agents_atom = caf::atom_constant<caf::atom("agents")>;       ///< node agent per rank
using replace_atom = caf::atom_constant<caf::atom("replace")>;     ///< a respawned worker
using recovered_atom = caf::atom_constant<caf::atom("recovered")>; ///< recovery ended
using recover_atom = caf::atom_constant<caf::atom("recover")>;     ///< for a recovery
using rebuilt_atom = caf::atom_constant<caf::atom("rebuilt")>;     ///< communicators rebuilt

} // namespace cafex
