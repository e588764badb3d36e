// The node agent: describes its node, starts one worker process per bundle on request,
// hands the driver the worker's handle once the process registered, reaps children and
// kills them when their driver or the agent itself goes away.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/node_agent_protocol.hpp"
#include "runtime/defaults.hpp"
#include "runtime/failure_cause.hpp"
#include "runtime/plan/resource_ledger.hpp"
#include "runtime/os/child_process.hpp"
#include "transport/worker_routes.hpp"

namespace cafex {

struct node_agent_options {
  node_info info;
  std::string worker_program; ///< executable run as `<program> worker ...`
  /// How often children are polled for exit.
  std::chrono::milliseconds reap_interval = defaults::reap_interval;
  /// SIGTERM to SIGKILL when a worker is stopped.
  std::chrono::milliseconds kill_grace = defaults::kill_grace;
  /// How long a cause question waits for a lost worker's process to be reaped.
  std::chrono::milliseconds cause_wait = defaults::cause_wait;
  /// Direct routes from drivers to this node's workers (null: none; drivers reach the
  /// workers through the agent's process, as with the embedded agent). Each worker gets a
  /// channel on which the front door passes it the drivers' connections for its route.
  std::shared_ptr<worker_routes> routes;
  /// Name prefixes of the variables a driver may set on this node's workers (empty: any).
  std::vector<std::string> env_allow;
  /// Spawns must name a live reservation holding their bundle (remote agents).
  bool require_reservation = false;
};

struct node_agent_state {
  /// The agent's end: its children are terminated (child_process), and what their TP
  /// groups may have left in /dev/shm goes with them.
  ~node_agent_state();

  struct child {
    child_process proc;
    spawn_request req;
    caf::typed_response_promise<worker_actor, uint16_t> rp;
    caf::actor_addr owner;
    bool registered = false;
    std::string worker_id; ///< worker_key() of the registered worker
    std::chrono::steady_clock::time_point deadline;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    route_lease route; ///< its direct route, while the record lasts
  };
  node_agent_options opts;
  uint64_t next_spawn_id = 1;
  std::map<uint64_t, child> children;
  resource_ledger ledger;
  std::map<uint64_t, std::string> driver_names; ///< reservation id -> who holds it
  /// reservation id -> when it was made
  std::map<uint64_t, std::chrono::steady_clock::time_point> reserved_at;
  std::set<caf::node_id> checked_peers; ///< remote nodes whose version matched
  bool reaping = false;
  /// Pending "why did this worker end" questions: answered once the child is reaped, or
  /// with its process state at the deadline.
  struct cause_query {
    std::string worker_id;
    caf::typed_response_promise<failure_cause> rp;
    std::chrono::steady_clock::time_point deadline;
  };
  std::vector<cause_query> cause_queries;
  std::map<std::string, failure_cause> ended; ///< worker id -> how it ended (bounded)
  static inline const char* name = "cafex.node_agent";
};

/// The agent's state as `cafex status` shows it: {"node_id", "ip", "version",
/// "resource", "device_kind", "devices": [{"id", "free", "reserved": [{"reservation",
/// "driver", "share", "bundle", "for_s"}]}], "workers": [{"rank", "bundle", "pid",
/// "state": "starting"|"running", "uptime_s", "driver"}]}.
std::string agent_status_json(const node_agent_state& st);

node_agent_actor::behavior_type
node_agent_impl(node_agent_actor::stateful_pointer<node_agent_state> self,
                node_agent_options opts);

/// A random node id (hex), like Ray's.
std::string make_node_id();

} // namespace cafex
