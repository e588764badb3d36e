// The compiled dataflow (the seed's compiled DAG): what each worker learns when it is
// compiled, and the messages its stages send to the driver.
#pragma once

#include <cstdint>
#include <string>

#include <caf/actor_control_block.hpp>
#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "actors/atoms.hpp"
#include "runtime/dataflow/scheduler_output.hpp"
#include "runtime/defaults.hpp"

namespace cafex {

/// Where the driver collects step results: (result | progress | stepfail, seq, rank, ...),
/// and hears that a caller's direct step ended (lanefree) while its own steps waited.
using step_sink_actor = caf::typed_actor<
  caf::reacts_to<result_atom, uint64_t, int32_t, model_runner_output>,
  caf::reacts_to<progress_atom, uint64_t, int32_t>,
  caf::reacts_to<stepfail_atom, uint64_t, int32_t, caf::error>, caf::reacts_to<lanefree_atom>>;

/// One worker's place in the dataflow.
struct dag_config {
  uint64_t generation = 0; ///< bumps on every compile; names the channels
  int32_t stage = 0;       ///< pipeline rank
  int32_t num_stages = 1;
  std::string channel = "gloo"; ///< resolved channel type for intermediate tensors
  std::string store_url;        ///< rendezvous store (distributed_init_method)
  std::string bind_host;        ///< this worker's address for channel sockets
  int64_t timeout_ms =
    defaults::channel_timeout.count(); ///< channel set-up and transfer deadline
  bool report_all = false;             ///< KV connector: every rank reports its output
  std::string kv_connector;            ///< "" or "loopback" (reports finished requests)
  /// Non-empty: the same-node shared-memory hot path; rings are named with this prefix
  /// ("<prefix>cmd<rank>", "<prefix>link<rank>", "<prefix>res<rank>", "<prefix>bell",
  /// and the direct lane's "<prefix>dbell" and "<prefix>board").
  std::string shm_prefix;
  int32_t tp = 1; ///< TP size (ring names of the next stage)
  /// Shared-memory path: how long the hot loop spins after a step before it sleeps (it
  /// spins only where every process of the dataflow has a core).
  int64_t spin_us = defaults::hot_spin.count();
  caf::strong_actor_ptr next; ///< worker i of stage + 1 (null on the last stage)
  caf::strong_actor_ptr sink; ///< the driver
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dag_config& x) {
  return f(caf::meta::type_name("cafex::dag_config"), x.generation, x.stage, x.num_stages,
           x.channel, x.store_url, x.bind_host, x.timeout_ms, x.report_all, x.kv_connector,
           x.shm_prefix, x.tp, x.spin_us, x.next, x.sink);
}

} // namespace cafex
