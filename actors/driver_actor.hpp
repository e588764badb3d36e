// The driver actor: holds the workers in rank order, fans collective_rpc out and gathers
// the answers, runs steps through the compiled dataflow, and fails every pending call of
// a worker that goes away instead of letting it wait for its timeout.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/driver_protocol.hpp"
#include "actors/driver_shm.hpp"
#include "actors/system_config.hpp"
#include "runtime/dataflow/deadline_queue.hpp"
#include "runtime/dataflow/kv_aggregator.hpp"
#include "runtime/dataflow/step_order.hpp"
#include "runtime/defaults.hpp"
#include "runtime/health.hpp"

namespace cafex {

struct driver_options {
  std::chrono::milliseconds default_rpc_timeout = defaults::rpc_timeout;
  std::chrono::milliseconds step_timeout = defaults::step_timeout;
  size_t max_concurrent_batches = 1; ///< PP size, or 2 with async scheduling
  std::string channel = "gloo";      ///< resolved channel type of the dataflow
  std::string kv_connector;          ///< "" or "loopback"
  std::chrono::milliseconds channel_timeout = defaults::channel_timeout;
  /// After a teardown that closed the TP communicators: how long steps wait for the
  /// executor to say they were rebuilt (rebuilt_atom) before that wait is given up.
  std::chrono::milliseconds rebuild_timeout = defaults::teardown_timeout
                                              + defaults::start_timeout
                                              + defaults::driver_slack;
  liveness_options liveness; ///< for cause lookups and their messages
  /// Restart policy: called (from the driver's thread; must not block) when a worker is
  /// lost (rank >= 0) or a TP communicator broke (rank -1), once the driver has failed
  /// what was pending and torn the dataflow down. The host then respawns, re-runs the
  /// lifecycle and answers recovered_atom. Empty: the fail policy.
  std::function<void(int32_t rank, std::string why)> on_recover;
  /// Where the driver publishes a compiled same-node generation for the direct lane of
  /// blocking callers (none: every step takes the actor path).
  std::shared_ptr<lane_slot> lane;
  std::chrono::microseconds hot_spin = defaults::hot_spin; ///< workers' spin after a step
};

/// One collective_rpc waiting for answers.
struct pending_rpc {
  std::string what;      ///< "method 'x'" for messages
  std::set<int> waiting; ///< ranks that owe an answer
  std::vector<std::string> results;
  int unique_reply_rank = -1;
  bool done = false;
  caf::typed_response_promise<std::vector<std::string>> rp;
};

/// One step of the dataflow, from submission to its in-order answer.
struct pending_step {
  scheduler_output step;
  bool fail_fast = false;
  caf::typed_response_promise<model_runner_output> rp;
  std::set<int> owing;                      ///< ranks that have not reported yet
  std::vector<model_runner_output> outputs; ///< KV connector: one per rank
  model_runner_output output;
  caf::error error;
  bool finished = false;
  const driver_shm_path* via = nullptr; ///< the rings it went through (none: actors)
};

/// One rank as the driver holds it. Everything the driver knows per rank lives here, so
/// a rerank permutes the slots as a whole.
struct rank_slot {
  worker_actor worker;
  std::string node_id;
  node_agent_actor agent; ///< the agent that started it (none: nobody to ask)
  std::string node_ip;    ///< where its channel binds (empty: not told yet, loopback)
  health_state state = health_state::healthy;     ///< while probing it reads unresponsive
  failure_cause cause{failure_cause::kind::none}; ///< why it is gone (none: alive)
  std::string why;          ///< for humans: why it is gone, empty while alive
  bool gone = false;        ///< lost (or given up): it takes no calls and no steps
  bool probing = false;     ///< its link dropped: asking its agent how it ended
  std::string tp_transport; ///< its TP group's transport, as it answered the compile
};

struct driver_state {
  driver_options opts;
  std::vector<rank_slot> ranks;          ///< by rank (created rank before rerank)
  std::set<caf::actor_addr> lost_agents; ///< agents whose link dropped: never asked again
  bool started = false;                  ///< start-up done (the dataflow configured)
  bool recovering = false;               ///< restart policy: between a loss and recovered
  std::string recovery_reason;           ///< what is being recovered from
  int tp = 1;
  int pp = 1;
  uint64_t next_rpc = 1;
  std::map<uint64_t, std::shared_ptr<pending_rpc>> rpcs;
  // The dataflow.
  std::string store_url;
  bool use_shm = false;                 ///< same-node shared-memory hot path
  std::shared_ptr<driver_shm_path> shm; ///< this generation's rings, when use_shm
  enum class dag_state { none, compiling, ready } dag = dag_state::none;
  uint64_t generation = 0;
  /// Between a teardown that closed the TP communicators and the executor's rebuilt_atom:
  /// a step compiled now would meet ranks on different communicator generations, so
  /// steps queue instead.
  bool rebuilding = false;
  uint64_t rebuild_number = 0; ///< which teardown's rebuild is awaited (its deadline's tag)
  std::deque<std::shared_ptr<pending_step>> queued;            ///< waiting for a slot
  std::map<uint64_t, std::shared_ptr<pending_step>> in_flight; ///< by sequence number
  /// Each in-flight step's deadline, behind one timer (a delayed_send per step would
  /// stay in CAF's clock for the whole step timeout, answered or not).
  deadline_queue deadlines;
  step_window window{1};
  in_order_buffer<std::shared_ptr<pending_step>> done{0};
  std::unique_ptr<kv_output_aggregator> kv;
  uint64_t steps_ok = 0;
  uint64_t steps_failed = 0;
  /// Steps that ended on the direct lane, every generation (not in steps_ok/failed).
  std::shared_ptr<direct_lane::counters> lane_counts =
    std::make_shared<direct_lane::counters>();
  static inline const char* name = "cafex.driver";
};

using driver_ptr = driver_actor::stateful_pointer<driver_state>;

driver_actor::behavior_type driver_impl(driver_ptr self, driver_options opts);

/// Restart policy: fails what is pending, tears the dataflow down and asks the host to
/// recover (options.on_recover). rank -1: a communicator broke, no worker was lost.
/// Not during start-up: a loss there fails start-up (see restarts()).
void begin_recovery(driver_ptr self, int rank, const std::string& reason);

/// True when a lost worker is replaced: the restart policy, once start-up is done. A
/// worker lost during start-up fails it, whatever the policy.
inline bool restarts(const driver_state& st) {
  return st.started && static_cast<bool>(st.opts.on_recover);
}

/// "rank 3 on node ab12".
std::string who(const driver_state& st, int rank);

/// (workers, handles, node ids, tp, pp): one healthy slot per rank, in created order.
caf::error take_workers(driver_state& st, std::vector<worker_actor> ws,
                        std::vector<std::string> nodes, int tp, int pp);

/// (rerank, order): order[adjusted rank] = created rank; one permutation of the slots.
caf::error apply_rerank(driver_state& st, const std::vector<int32_t>& order);

/// (health): every rank's state; a rank whose link just dropped reads unresponsive, and
/// live ranks read rebuilding while a recovery runs.
std::vector<worker_health> health_report(const driver_state& st);

/// The rank of the worker at `addr`, or -1 (ranks move on a rerank: look it up again).
int rank_of(const driver_state& st, const caf::actor_addr& addr);

} // namespace cafex
