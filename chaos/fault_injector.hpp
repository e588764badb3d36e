// Applies a scenario's faults at their step, time or start-up phase, as `cafex chaos`
// needs them: signals to a rank's process (its pid from the process_info worker method,
// or from the start-up hook), the worker fault methods (fault.delay,
// fault.break_collective, fault.fail, fault.throw), and node faults on simulated hosts.
// Stopped workers and agents are continued by release(), so that nothing outlives the run
// stopped. Thread-safe: during start-up, the executor's hook (phase_begins) and the
// runner's polling (apply_due) run on two threads.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "chaos/scenario.hpp"

namespace cafex {

class executor;
class host_faults;

class fault_injector {
public:
  using clock_type = std::chrono::steady_clock;
  /// Called with the error of a fault method call (a fault.fail reaches the caller so).
  using error_sink = std::function<void(const caf::error&, const std::string& where)>;
  using logger = std::function<void(const std::string&)>;

  fault_injector(const std::vector<scenario_fault>& faults, host_faults* hosts,
                 error_sink on_error, logger log);

  /// The started executor, for the fault methods and for pids (before: start-up faults).
  void attach(executor& ex) { ex_ = &ex; }

  /// Learns each rank's worker pid (again after a recovery replaced workers).
  void refresh_pids();

  /// A start-up phase begins (the executor's on_startup_phase): learns the pids it
  /// carries, applies the faults `during` it with no at_ms, and counts the others' at_ms
  /// from now. Faults of a phase that ended before their at_ms passed are reported missed.
  void phase_begins(const startup_event& ev);

  /// Start-up returned: faults of its last phase that did not fire are reported missed.
  void startup_over();

  /// Marks the first submission: at_ms faults count from here.
  void first_submission();

  /// Applies the faults due before submission number `n` (at_step == n) and those whose
  /// at_ms has passed; `n` < 0 checks the time only. Each fault fires once.
  void apply_due(int n);

  /// When the last fault (other than continue, restore_link, continue_agent) was applied.
  std::optional<clock_type::time_point> last_fault() const;

  /// "at 450 ms: kill rank 1 signal 9 (pid 123)", in order.
  std::vector<std::string> applied() const;

  /// SIGCONT to every worker and agent this injector stopped and did not continue.
  void release();

private:
  void apply(const scenario_fault& f, const std::string& when);
  void signal_rank(int rank, int sig, std::string& what);
  void call(const std::string& method, const std::string& args_json);
  void miss_phase_faults(const std::string& why);

  const std::vector<scenario_fault>& faults_;
  executor* ex_ = nullptr;
  host_faults* hosts_;
  error_sink on_error_;
  logger log_;
  mutable std::recursive_mutex mtx_; ///< the error sink may ask last_fault()
  std::vector<bool> done_;
  std::map<int, long> pids_;
  std::set<long> stopped_;
  std::set<int> stopped_agents_;
  std::optional<startup_phase> phase_; ///< the start-up phase running
  clock_type::time_point phase_began_{};
  std::optional<clock_type::time_point> first_, last_fault_;
  std::vector<std::string> log_lines_;
};

} // namespace cafex
