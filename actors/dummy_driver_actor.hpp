// The dummy driver (the seed's driver_dummy_worker): an actor in the driver process that
// owns the placement group's reservations, the driver node's bundle included. Node agents
// monitor it, so when the driver process ends, however it ends, its bundles are freed.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <vector>

#include <caf/all.hpp>

#include "actors/dummy_driver_protocol.hpp"
#include "runtime/defaults.hpp"

namespace cafex {

struct dummy_driver_state {
  struct held {
    node_agent_actor agent;
    uint64_t id = 0;
  };
  std::vector<held> reservations;
  std::vector<node_agent_actor> spawned_on; ///< agents that run our workers
  /// A kill in progress: the agents that still owe an answer (a lost one owes none).
  struct kill_wait {
    std::set<caf::actor_addr> owed;
    int32_t total = 0;
    caf::typed_response_promise<int32_t> rp;
  };
  std::shared_ptr<kill_wait> killing;
  std::chrono::milliseconds agent_timeout = defaults::agent_timeout;
  std::string label; ///< "driver on HOST, pid P, since TIME": how the agents name us
  static inline const char* name = "cafex.dummy_driver";
};

dummy_driver_actor::behavior_type
dummy_driver_impl(dummy_driver_actor::stateful_pointer<dummy_driver_state> self,
                  std::chrono::milliseconds agent_timeout, std::string label);

/// "driver on HOST, pid P, since 2026-12-03T18:57:12Z": this process, for the agents' logs.
std::string this_driver_label();

} // namespace cafex
