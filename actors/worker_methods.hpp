// What a worker can be asked to do by name, and the state those methods share. The
// built-in methods reproduce the seed's worker wrapper (adjust_rank, environment,
// init_worker, init_device, load_model, ...); a host program adds its own to the table
// and starts workers with `worker_main` (only registered methods run: no code travels).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "runtime/models/collective.hpp"
#include "chaos/fault_hooks.hpp"
#include "runtime/defaults.hpp"
#include "runtime/models/model_runner.hpp"
#include "runtime/models/rebindable_collective.hpp"

namespace cafex {

using json = nlohmann::json;

/// Everything a worker process knows about itself.
struct worker_state {
  // Given at spawn by the node agent.
  int rpc_rank = 0; ///< created rank until adjust_rank, then the rank
  int bundle_index = 0;
  std::string node_id;
  std::string node_ip;
  std::vector<int> device_ids;
  // Set by init_worker.
  bool initialized = false;
  int rank = -1;
  int local_rank = -1;
  bool is_driver_worker = false;
  std::string distributed_init_method;
  int tp_size = 1;
  int pp_size = 1;
  std::string device = "cpu";
  std::string tp_transport = "auto"; ///< CPU TP groups: auto, shm, tcp or gloo
  model_config model;
  int64_t init_timeout_ms = defaults::worker_init_timeout.count();
  // Set by init_device / load_model.
  bool device_ready = false;
  int cuda_device = -1; ///< the GPU init_device bound (device == "cuda")
  /// Communicator generation: 0 at start, +1 for every reinitialize_distributed (group
  /// names on the rendezvous store carry it, so a rebuilt group never meets old keys).
  int comm_generation = 0;
  /// Stable for the runner's lifetime; the communicator inside is rebuilt in place.
  std::unique_ptr<rebindable_collective> tp_group = std::make_unique<rebindable_collective>();
  std::unique_ptr<model_runner> runner;
  /// Fault injection on the step path (armed only by the fault.* methods, which exist
  /// when CAFEX_FAULT_INJECTION=1). Shared: the state is moved, the stage keeps a handle.
  std::shared_ptr<fault_hooks> faults = std::make_shared<fault_hooks>();

  int tp_rank() const { return rank % tp_size; }
  int pp_rank() const { return rank / tp_size; }
};

using worker_method = std::function<caf::expected<json>(worker_state&, const json& args)>;

/// Method name -> implementation.
class method_table {
public:
  /// The seed's worker methods.
  static method_table builtins();
  void add(const std::string& name, worker_method fn);
  const worker_method* find(const std::string& name) const;
  std::vector<std::string> names() const;
  /// Adds every method of `other` (later ones win).
  void merge(const method_table& other);

private:
  std::map<std::string, worker_method> methods_;
};

/// Runs `name` with JSON text `args`; never throws (exceptions become method_failed).
caf::expected<std::string> invoke_method(const method_table& table, worker_state& st,
                                         const std::string& name, const std::string& args);

} // namespace cafex
