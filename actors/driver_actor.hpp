// The driver actor: holds the workers in rank order, fans collective_rpc out and gathers
// the answers, runs steps, and fails every pending call of a worker that goes away
// instead of letting it wait for its timeout.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/driver_protocol.hpp"

namespace cafex {

struct driver_options {
  std::chrono::milliseconds default_rpc_timeout{60000};
  std::chrono::milliseconds step_timeout{300000};
};

struct driver_state {
  /// One collective_rpc (or step) waiting for answers.
  struct pending {
    std::string what;                      ///< "method 'x'" for messages
    std::set<int> waiting;                 ///< ranks that owe an answer
    std::vector<std::string> results;
    int unique_reply_rank = -1;
    bool done = false;
    caf::typed_response_promise<std::vector<std::string>> rp;
  };
  struct pending_step {
    std::set<int> waiting;
    int output_rank = 0;
    model_runner_output output;
    bool done = false;
    caf::typed_response_promise<model_runner_output> rp;
  };
  driver_options opts;
  std::vector<worker_actor> workers;       ///< by rank (created rank before rerank)
  std::vector<std::string> node_ids;       ///< by rank
  std::vector<std::string> dead;           ///< by rank: why it is gone, empty if alive
  int tp = 1;
  int pp = 1;
  uint64_t next_id = 1;
  std::map<uint64_t, std::shared_ptr<pending>> rpcs;
  std::map<uint64_t, std::shared_ptr<pending_step>> steps;
  static inline const char* name = "cafex.driver";
};

driver_actor::behavior_type
driver_impl(driver_actor::stateful_pointer<driver_state> self, driver_options opts);

} // namespace cafex
