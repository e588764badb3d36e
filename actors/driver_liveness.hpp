// How the driver learns that a rank is lost and what it does then: ask the node agent
// how the process ended, fail at once what waits for it, and under the restart policy
// take part in the host's recovery (kill the old process, install the new worker, end).
#pragma once

#include <string>

#include "actors/driver_actor.hpp"

namespace cafex {

/// A monitored worker or node agent went away.
void on_down(driver_ptr self, const caf::down_msg& dm);

/// (kill, rank): SIGKILLs that rank's process through its node agent; answers, for the
/// log, how it ended.
caf::result<std::string> kill_rank(driver_ptr self, int32_t rank);

/// (replace, rank, worker, node, ip, agent): installs a respawned worker at `rank`.
caf::result<bool> replace_rank(driver_ptr self, int32_t rank, worker_actor& w,
                               std::string& node, std::string& ip, node_agent_actor& agent);

/// (recovered, ok, why): the recovery ended; ok: every rank is healthy again, else every
/// rank is marked dead.
bool end_recovery(driver_ptr self, bool ok, const std::string& why);

} // namespace cafex
