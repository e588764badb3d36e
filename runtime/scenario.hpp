// Failure-injection scenarios (`cafex chaos FILE`): a pure parser from JSON text to plain
// structs, so bad files get clear errors without starting anything. The format is
// documented in examples/failure_injection/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace cafex {

/// One fault, injected just before step `at_step` is submitted.
struct scenario_fault {
  enum class action { kill, stop, cont, fail_method, delay } what = action::kill;
  int at_step = 0;
  int rank = 0;
  int signal = 9;            ///< kill: the signal to send
  int ms = 0;                ///< delay: how long the rank sleeps in a method
  std::string method;        ///< fail_method: "throw" or "fail_on" (test worker methods)
};

/// What must happen.
struct scenario_expectation {
  bool success = true;       ///< true: every step succeeds
  bool same_tokens = true;   ///< success: tokens equal a run without faults
  std::string error;         ///< error outcome: the errc name, e.g. "worker_lost"
  std::string contains;      ///< error outcome: text the error must contain
  int64_t within_ms = 5000;  ///< error outcome: from the fault to the failure
};

struct scenario {
  std::string name;
  int tp = 1;
  int pp = 1;
  std::string model = "sleepy";  ///< the test worker's models: sleepy, reference, failing_load
  std::vector<std::string> nodes;  ///< empty: embedded
  int steps = 4;
  int step_sleep_ms = 0;         ///< sleepy model: each step sleeps this long on every stage
  std::vector<scenario_fault> faults;
  scenario_expectation expect;
};

/// Parses scenario JSON; `origin` names the file in errors (errc::invalid_config).
caf::expected<scenario> parse_scenario(const std::string& text, const std::string& origin);

/// Reads and parses a scenario file.
caf::expected<scenario> load_scenario(const std::string& path);

const char* to_string(scenario_fault::action a);

} // namespace cafex
