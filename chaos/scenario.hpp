// Failure-injection scenarios (`cafex chaos FILE`): a pure parser from JSON text to plain
// structs, so bad files get clear errors without starting anything. The format is
// documented in examples/failure_injection/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cafex/executor.hpp" // startup_phase

namespace cafex {

/// One fault, injected just before step `at_step` is submitted, or `at_ms` after the
/// first step was submitted; or, with `during`, in a start-up phase (`at_ms` after it
/// began, at once by default).
struct scenario_fault {
  enum class action {
    kill,             ///< send `signal` to the rank's process
    stop,             ///< SIGSTOP the rank's process
    cont,             ///< SIGCONT it ("continue")
    fail_method,      ///< a fault.fail / fault.throw call that fails on the rank
    delay,            ///< the rank's next `steps` steps each wait `ms`
    break_collective, ///< the rank's TP communicator breaks
    cut_link,         ///< simulated host `node` loses its network link
    restore_link,     ///< ... and gets it back
    kill_agent,       ///< send `signal` (SIGKILL) to simulated host `node`'s `cafex node`
    stop_agent,       ///< SIGSTOP that agent: alive, but silent
    continue_agent,   ///< SIGCONT it
  } what = action::kill;
  int at_step = 0;    ///< when at_ms < 0: before this step (0..steps-1) is submitted
  int64_t at_ms = -1; ///< >= 0: this long after the first step was submitted (or `during`)
  std::optional<startup_phase> during; ///< set: fires in this start-up phase
  int rank = 0;                        ///< the rank hit (rank actions)
  int node = 0;                        ///< the simulated host hit (node actions)
  int signal = 9;                      ///< kill, kill_agent: the signal to send
  int ms = 0;                          ///< delay: how long each delayed step waits
  int steps = 1;                       ///< delay: how many steps are delayed
  std::string method = "fail";         ///< fail_method: "fail" or "throw"

  /// True for the actions that act on a simulated host rather than a rank.
  bool on_node() const {
    return what == action::cut_link || what == action::restore_link
           || what == action::kill_agent || what == action::stop_agent
           || what == action::continue_agent;
  }
  /// True for the actions done with a worker method (fault.*): none during start-up.
  bool by_method() const {
    return what == action::fail_method || what == action::delay
           || what == action::break_collective;
  }
  /// False for the actions that undo a fault (continue, restore_link, continue_agent).
  bool is_fault() const {
    return what != action::cont && what != action::restore_link
           && what != action::continue_agent;
  }
};

/// What must happen.
struct scenario_expectation {
  enum class outcome {
    success,     ///< every step succeeds (tokens equal a no-fault run when same_tokens)
    error,       ///< the caller sees error kind `error` within within_ms of the fault
    start_error, ///< start-up itself fails with kind `error` (within within_ms of a
                 ///< start-up fault, when there is one)
    recovered,   ///< steps in flight fail, state() is ready again within within_ms, the
                 ///< re-prefilled run finishes with the tokens of a no-fault run
  } what = outcome::success;
  bool same_tokens = true;          ///< success: compare tokens with a no-fault run
  std::string error;                ///< error / start_error: the errc name, or "a|b"
  std::string contains;             ///< error / start_error: text the error must contain
  int64_t within_ms = 5000;         ///< error, start_error: fault to caller; recovered:
                                    ///< fault to ready
  bool later_steps_succeed = false; ///< error: every step still succeeds (fail_method)
};

struct scenario {
  std::string name;
  // cluster
  int tp = 1;
  int pp = 1;
  std::string model = "sleepy";   ///< sleepy, reference, failing_load (fault-injection models)
  std::vector<std::string> nodes; ///< HOST:PORT of running agents; empty: embedded
  int hosts = 0;                  ///< > 0: that many simulated hosts (network namespaces)
  bool restart = false;           ///< on_worker_failure: "restart" (true) or "fail"
  int64_t heartbeat_ms = 0;       ///< 0: the liveness default
  int64_t connection_timeout_ms = 0; ///< 0: the liveness default
  int64_t step_timeout_ms = 0;       ///< 0: the runner's default (30 s)
  // workload
  int steps = 4;
  int requests = 2;      ///< requests per batch
  int step_sleep_ms = 0; ///< sleepy model: each step sleeps this long on every stage
  std::vector<scenario_fault> faults;
  scenario_expectation expect;
};

/// Parses scenario JSON; `origin` names the file in errors (errc::invalid_config).
caf::expected<scenario> parse_scenario(const std::string& text, const std::string& origin);

/// Reads and parses a scenario file.
caf::expected<scenario> load_scenario(const std::string& path);

const char* to_string(scenario_fault::action a);
const char* to_string(scenario_expectation::outcome o);

} // namespace cafex
