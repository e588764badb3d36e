// Why a worker was lost, as the driver learns it from three sources: the CAF link
// (down_msg, heartbeats) and the node agent that reaped the process. Pure: the agent's
// short answer is parsed here and turned into the text a caller reads.
#pragma once

#include <chrono>
#include <string>

namespace cafex {

/// What the driver knows about a lost worker.
struct failure_cause {
  enum class kind { killed, exited, unresponsive, unreachable, unknown } what = kind::unknown;
  int code = 0;              ///< signal number (killed) or exit code (exited)
  bool stopped = false;      ///< unresponsive and the process is stopped (SIGSTOP, debugger)
};

/// The agent's answer to "why did this worker go": "signal:9", "exit:3", "stopped",
/// "running" (the process lives but the link timed out), or "unknown".
std::string agent_cause_text(bool signaled, int code);

/// Parses an agent answer; anything unrecognised is kind::unknown.
failure_cause parse_agent_cause(const std::string& text);

/// "killed by signal 9 (SIGKILL)", "exit code 3", "unresponsive: no heartbeat for 2000 ms",
/// "unreachable: link to node X lost".
std::string describe_cause(const failure_cause& c, std::chrono::milliseconds connection_timeout,
                           const std::string& node_id);

/// What to do about it, one sentence.
std::string advice_for(const failure_cause& c);

/// The worker_health state for a lost worker: "dead" (process ended) or "unresponsive".
std::string health_state_of(const failure_cause& c);

} // namespace cafex
