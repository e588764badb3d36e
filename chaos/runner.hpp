// Runs one failure-injection scenario the way a host would: an executor with the
// scenario's shape, a deterministic workload stepped with execute_model_async (up to
// max_concurrent_batches in flight, so faults hit steps in flight), faults applied at
// their step or time, then a verdict on the expected outcome. `cafex chaos` prints it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/cluster/cluster.hpp"
#include "cafex/executor.hpp"
#include "chaos/scenario.hpp"

namespace cafex {

/// The node-level faults, on simulated hosts (chaos/simulated_hosts); null when embedded.
class host_faults {
public:
  virtual ~host_faults() = default;
  virtual caf::error cut_link(int node) = 0;
  virtual caf::error restore_link(int node) = 0;
  /// Sends `signal` to the node's agent: SIGKILL (a crash), SIGTERM (a clean stop).
  virtual caf::error kill_agent(int node, int signal) = 0;
  virtual caf::error stop_agent(int node) = 0;     ///< SIGSTOP: alive but silent
  virtual caf::error continue_agent(int node) = 0; ///< SIGCONT
};

struct chaos_options {
  std::string worker_program; ///< empty: this executable (`cafex worker`)
  bool verbose = false;       ///< progress on stderr, worker logs at warn
  cluster_options cluster;    ///< simulated hosts fill nodes, host_ip and the token
  host_faults* hosts = nullptr;
};

/// What one run (baseline or faulty) saw.
struct chaos_run {
  bool started = false;
  std::string start_error_kind, start_error_text;
  int64_t fault_to_start_error_ms = -1; ///< from the last start-up fault to start() failing
  int steps_ok = 0;
  std::vector<std::vector<int32_t>> tokens; ///< per request: tokens generated
  bool saw_error = false;
  std::string error_kind, error_text;      ///< the first error the caller saw
  int64_t fault_to_error_ms = -1;          ///< from the last fault before it
  int64_t recovery_ms = -1;                ///< from the fault to state() ready again
  int later_errors = 0;                    ///< errors after the first
  std::string note;                        ///< why the run stopped early, if it did
  std::vector<std::string> faults_applied; ///< "step 2: kill rank 1 (pid 123)"
  double wall_ms = 0;
  double shutdown_ms = 0; ///< executor::shutdown() alone
};

struct chaos_report {
  std::string name;
  bool pass = false;
  std::string reason; ///< why it passed or failed, one line
  bool compared_tokens = false;
  bool same_tokens = false;
  chaos_run baseline, faulty;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

/// Sets rep.pass and rep.reason from the runs and the scenario's expectation.
void judge(const scenario& s, chaos_report& rep);

class chaos_runner {
public:
  chaos_runner(scenario s, chaos_options opts);
  ~chaos_runner();

  /// The baseline (when tokens are compared), then the faulty run, then the verdict.
  chaos_report run();

private:
  struct run_state;
  chaos_run run_once(bool with_faults);
  /// executor::start, with the start-up faults applied in their phases.
  caf::expected<std::unique_ptr<executor>> start_with_faults(run_state& rs,
                                                             executor_options o);

  scenario s_;
  chaos_options opts_;
};

} // namespace cafex
