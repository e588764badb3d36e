// Why a worker was lost, as the driver learns it from three sources: the CAF link
// (down_msg, heartbeats) and the node agent that reaped the process. The struct itself
// travels (the agent answers one); text is made from it for humans only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

namespace cafex {

/// What the driver knows about a lost worker.
struct failure_cause {
  /// CAF 0.17 writes this enum as its underlying integer: never renumber.
  enum class kind : uint8_t {
    none = 0,         ///< nothing lost (a live worker)
    killed = 1,       ///< the process ended by a signal (code)
    exited = 2,       ///< the process exited (code)
    unresponsive = 3, ///< it lives, but its link timed out (stopped: SIGSTOP, debugger)
    unreachable = 4,  ///< its node agent is lost too: nobody can say how it ended
    link_dropped = 5, ///< its link dropped and the driver is asking its agent why
    unknown = 6,      ///< nobody knows (no agent, or the agent has no record of it)
  } what = kind::unknown;
  int32_t code = 0;              ///< signal number (killed) or exit code (exited)
  bool stopped = false;          ///< unresponsive and the process is stopped
  bool link_unreachable = false; ///< the CAF link said remote_link_unreachable
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, failure_cause& x) {
  return f(caf::meta::type_name("cafex::failure_cause"), x.what, x.code, x.stopped,
           x.link_unreachable);
}

/// A reaped process: killed by signal `code`, or exited with `code`.
failure_cause process_ended(bool signaled, int code);

/// A process that still lives after the agent's short wait (its link timed out).
failure_cause still_running(bool stopped);

/// "killed by signal 9 (SIGKILL)", "exit code 3", "unresponsive: no heartbeat for 2000 ms",
/// "unreachable: link to node X lost", "link dropped".
std::string describe_cause(const failure_cause& c,
                           std::chrono::milliseconds connection_timeout,
                           const std::string& node_id);

/// What to do about it, one sentence.
std::string advice_for(const failure_cause& c);

/// The worker's node itself may be gone (its agent is lost, or the link said the node is
/// unreachable and nobody knew more): a replacement may have to run on another node.
bool node_suspect(const failure_cause& c);

} // namespace cafex
