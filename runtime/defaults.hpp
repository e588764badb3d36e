// Every default duration of cafex in one place, each with why it is what it is (as Ray's
// ray_config_def.h and CAF's defaults.hpp). Option structs take their defaults from here;
// call sites name the constant, never a literal.
#pragma once

#include <chrono>

namespace cafex::defaults {

// Driver and node agent

/// collective_rpc answer per worker when the caller passes no timeout (the seed's RPC
/// default: a model load can take this long).
inline constexpr std::chrono::milliseconds rpc_timeout{60000};
/// One step through the dataflow, submission to answer (a long prefill on a slow device).
inline constexpr std::chrono::milliseconds step_timeout{300000};
/// Compiling the dataflow: every stage opens its channel within this.
inline constexpr std::chrono::milliseconds channel_timeout{30000};
/// A live worker's answer to teardown when a recovery drops the dataflow: it only closes
/// channels, so a worker that takes longer is lost and its monitor says so.
inline constexpr std::chrono::milliseconds teardown_timeout{10000};
/// Added to the cause timeout for a kill through the node agent: the agent waits up to its
/// kill grace for the process to be reaped before it answers.
inline constexpr std::chrono::milliseconds kill_answer_margin{5000};
/// How often a node agent polls its children for exit (cheap waitpid calls).
inline constexpr std::chrono::milliseconds reap_interval{50};
/// The poll while a cause question waits: a killed worker's link drops a few ms before
/// its process can be reaped, and the driver's callers wait on the answer.
inline constexpr std::chrono::milliseconds cause_poll_interval{5};
/// SIGTERM to SIGKILL when a node agent stops a worker.
inline constexpr std::chrono::milliseconds kill_grace{2000};
/// How long a cause question waits for a lost worker's process to be reaped before the
/// agent answers with the state of a process that still lives.
inline constexpr std::chrono::milliseconds cause_wait{200};

} // namespace cafex::defaults
