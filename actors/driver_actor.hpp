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
#include "runtime/dataflow/kv_aggregator.hpp"
#include "runtime/dataflow/step_order.hpp"

namespace cafex {

struct driver_options {
  std::chrono::milliseconds default_rpc_timeout{60000};
  std::chrono::milliseconds step_timeout{300000};
  size_t max_concurrent_batches = 1;   ///< PP size, or 2 with async scheduling
  std::string channel = "gloo";        ///< resolved channel type of the dataflow
  std::string kv_connector;            ///< "" or "loopback"
  std::chrono::milliseconds channel_timeout{30000};
  liveness_options liveness;           ///< for cause lookups and their messages
  /// Restart policy: called (from the driver's thread; must not block) when a worker is
  /// lost (rank >= 0) or a TP communicator broke (rank -1), once the driver has failed
  /// what was pending and torn the dataflow down. The host then respawns, re-runs the
  /// lifecycle and answers recovered_atom. Empty: the fail policy.
  std::function<void(int32_t rank, std::string why)> on_recover;
};

/// One collective_rpc waiting for answers.
struct pending_rpc {
  std::string what;                      ///< "method 'x'" for messages
  std::set<int> waiting;                 ///< ranks that owe an answer
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
  std::set<int> owing;                   ///< ranks that have not reported yet
  std::vector<model_runner_output> outputs;  ///< KV connector: one per rank
  model_runner_output output;
  caf::error error;
  bool finished = false;
};

struct driver_state {
  driver_options opts;
  std::vector<worker_actor> workers;     ///< by rank (created rank before rerank)
  std::vector<std::string> node_ids;     ///< by rank
  std::vector<std::string> dead;         ///< by rank: why it is gone, empty if alive
  std::vector<std::string> health;       ///< by rank: worker_health state
  std::vector<node_agent_actor> agents;  ///< by rank: the agent that started it
  std::vector<bool> probing;             ///< by rank: lost, asking its agent why
  std::set<caf::actor_addr> lost_agents; ///< agents whose link dropped: never asked again
  bool recovering = false;               ///< restart policy: between a loss and recovered
  std::string recovery_reason;           ///< what is being recovered from
  int tp = 1;
  int pp = 1;
  uint64_t next_rpc = 1;
  std::map<uint64_t, std::shared_ptr<pending_rpc>> rpcs;
  // The dataflow.
  std::string store_url;
  std::vector<std::string> node_ips;     ///< by rank
  bool use_shm = false;                  ///< same-node shared-memory hot path
  std::unique_ptr<driver_shm_path> shm;  ///< this generation's rings, when use_shm
  enum class dag_state { none, compiling, ready } dag = dag_state::none;
  uint64_t generation = 0;
  std::deque<std::shared_ptr<pending_step>> queued;      ///< waiting for a slot
  std::map<uint64_t, std::shared_ptr<pending_step>> in_flight;  ///< by sequence number
  step_window window{1};
  in_order_buffer<std::shared_ptr<pending_step>> done{0};
  std::unique_ptr<kv_output_aggregator> kv;
  uint64_t steps_ok = 0;
  uint64_t steps_failed = 0;
  static inline const char* name = "cafex.driver";
};

using driver_ptr = driver_actor::stateful_pointer<driver_state>;

driver_actor::behavior_type driver_impl(driver_ptr self, driver_options opts);

/// Restart policy: fails what is pending, tears the dataflow down and asks the host to
/// recover (options.on_recover). rank -1: a communicator broke, no worker was lost.
void begin_recovery(driver_ptr self, int rank, const std::string& reason);

/// "rank 3 on node ab12".
std::string who(const driver_state& st, int rank);

} // namespace cafex
