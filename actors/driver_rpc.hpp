// The driver's collective_rpc: fan one method out to its ranks, gather the answers in
// rank order, and fail the call at once when a rank it waits for is lost.
#pragma once

#include <string>
#include <vector>

#include "actors/driver_actor.hpp"

namespace cafex {

/// (rpc, method, JSON args, options): checks the targets, sends one call per rank and
/// answers once every rank did (or the first failure).
caf::result<std::vector<std::string>> start_rpc(driver_ptr self, const std::string& method,
                                                const std::string& args,
                                                const rpc_options& ro);

/// Fails every collective_rpc that waits for `rank` with `err`.
void fail_rpcs_waiting_for(driver_ptr self, int rank, const caf::error& err);

/// Fails every pending collective_rpc with `err` (shutdown).
void fail_all_rpcs(driver_ptr self, const caf::error& err);

} // namespace cafex
