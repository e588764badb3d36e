// Applies a scenario's faults to a running executor at their step or time, as `cafex
// chaos` needs them: signals to a rank's process (its pid from the process_info worker
// method), the worker fault methods (fault.delay, fault.break_collective, fault.fail,
// fault.throw), and node faults on simulated hosts. Stopped workers are continued by
// release(), so that nothing outlives the run stopped.
#pragma once

#include <chrono>
#include <functional>
#include <map>
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

  fault_injector(const std::vector<scenario_fault>& faults, executor& ex, host_faults* hosts,
                 error_sink on_error, logger log);

  /// Learns each rank's worker pid (again after a recovery replaced workers).
  void refresh_pids();

  /// Marks the first submission: at_ms faults count from here.
  void first_submission();

  /// Applies the faults due before submission number `n` (at_step == n) and those whose
  /// at_ms has passed; `n` < 0 checks the time only. Each fault fires once.
  void apply_due(int n);

  /// When the last fault (other than continue / restore_link) was applied.
  std::optional<clock_type::time_point> last_fault() const { return last_fault_; }

  /// "at 450 ms: kill rank 1 signal 9 (pid 123)", in order.
  const std::vector<std::string>& applied() const { return log_lines_; }

  /// SIGCONT to every worker this injector stopped and did not continue.
  void release();

private:
  void apply(const scenario_fault& f, const std::string& when);
  void signal_rank(int rank, int sig, std::string& what);
  void call(const std::string& method, const std::string& args_json);

  const std::vector<scenario_fault>& faults_;
  executor& ex_;
  host_faults* hosts_;
  error_sink on_error_;
  logger log_;
  std::vector<bool> done_;
  std::map<int, long> pids_;
  std::set<long> stopped_;
  std::optional<clock_type::time_point> first_, last_fault_;
  std::vector<std::string> log_lines_;
};

} // namespace cafex
