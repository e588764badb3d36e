// The scenario parser: good files become plain structs, bad files get errors that name
// the file, the field and what is allowed.
#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "chaos/scenario.hpp"

using namespace cafex;

namespace {

std::string error_of(const std::string& text) {
  auto s = parse_scenario(text, "t.json");
  REQUIRE_FALSE(s);
  CHECK(code_of(s.error()) == errc::invalid_config);
  return describe(s.error());
}

bool has(const std::string& t, const std::string& p) {
  return t.find(p) != std::string::npos;
}

} // namespace

TEST_CASE("a full scenario parses") {
  auto s = parse_scenario(R"({"name": "kill", "cluster": {"tp": 2, "pp": 1, "model": "sleepy"},
    "steps": 3, "step_sleep_ms": 50,
    "faults": [{"at_step": 1, "action": "kill", "rank": 1, "signal": 9}],
    "expect": {"outcome": "error", "error": "worker_lost", "contains": "signal 9",
               "within_ms": 2000}})",
                          "t.json");
  REQUIRE_MESSAGE(s, describe(s.error()));
  CHECK(s->tp == 2);
  CHECK(s->steps == 3);
  REQUIRE(s->faults.size() == 1);
  CHECK(s->faults[0].what == scenario_fault::action::kill);
  CHECK(s->faults[0].rank == 1);
  CHECK(s->expect.what == scenario_expectation::outcome::error);
  CHECK(s->expect.error == "worker_lost");
  CHECK(s->expect.within_ms == 2000);
}

TEST_CASE("a success scenario needs little") {
  auto s = parse_scenario(R"({"cluster": {"tp": 1}, "expect": {"outcome": "success"}})", "t");
  REQUIRE(s);
  CHECK(s->expect.what == scenario_expectation::outcome::success);
  CHECK(s->expect.same_tokens);
}

TEST_CASE("bad files get clear errors") {
  CHECK(has(error_of("{"), "is not JSON"));
  CHECK(has(error_of("[]"), "must be an object"));
  CHECK(has(error_of(R"({"expect": {"outcome": "success"}})"), "\"cluster\" is required"));
  CHECK(has(error_of(R"({"cluster": {"tp": 0}, "expect": {"outcome": "success"}})"),
            "cluster.tp must be in [1, 64]"));
  CHECK(has(error_of(R"({"cluster": {"tp": "2"}, "expect": {"outcome": "success"}})"),
            "must be an integer"));
  CHECK(has(error_of(R"({"cluster": {}, "bogus": 1, "expect": {"outcome": "success"}})"),
            "unknown key \"bogus\""));
  CHECK(has(error_of(R"({"cluster": {}})"), "\"expect\" is required"));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "maybe"}})"),
            "expect.outcome must be one of success, error, start_error, recovered"));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "error"}})"),
            "expect.error is required"));
  CHECK(has(error_of(R"({"cluster": {"tp": 2}, "faults": [{"action": "explode"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].action must be one of kill, stop, continue"));
  CHECK(has(error_of(R"({"cluster": {"tp": 2}, "faults": [{"action": "kill", "rank": 2}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].rank must be in [0, 1]"));
  CHECK(
    has(error_of(R"({"cluster": {}, "steps": 2, "faults": [{"action": "kill", "at_step": 5}],
                         "expect": {"outcome": "success"}})"),
        "faults[0].at_step must be in [0, 1]"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"action": "fail_method", "method": "x"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].method must be \"fail\" or \"throw\""));
  auto missing = load_scenario("/nonexistent/s.json");
  REQUIRE_FALSE(missing);
  CHECK(has(describe(missing.error()), "cannot read scenario file /nonexistent/s.json"));
}

TEST_CASE("the cluster's failure policy, liveness, step timeout and simulated hosts") {
  auto s = parse_scenario(R"({"cluster": {"tp": 2, "pp": 2, "on_worker_failure": "restart",
    "heartbeat_ms": 100, "connection_timeout_ms": 500, "step_timeout_ms": 800, "hosts": 2},
    "requests": 3, "steps": 6,
    "faults": [{"at_ms": 150, "action": "stop", "rank": 3},
               {"at_step": 4, "action": "continue", "rank": 3},
               {"action": "delay", "rank": 1, "ms": 300, "steps": 2},
               {"action": "break_collective", "rank": 2},
               {"action": "fail_method", "method": "throw", "rank": 0},
               {"action": "cut_link", "node": 1}, {"action": "restore_link", "node": 1},
               {"action": "kill_agent", "node": 0}],
    "expect": {"outcome": "recovered", "within_ms": 4000}})",
                          "t.json");
  REQUIRE_MESSAGE(s, describe(s.error()));
  CHECK(s->restart);
  CHECK(s->hosts == 2);
  CHECK(s->heartbeat_ms == 100);
  CHECK(s->connection_timeout_ms == 500);
  CHECK(s->step_timeout_ms == 800);
  CHECK(s->requests == 3);
  REQUIRE(s->faults.size() == 8);
  CHECK(s->faults[0].at_ms == 150);
  CHECK(s->faults[0].what == scenario_fault::action::stop);
  CHECK(s->faults[1].at_ms == -1);
  CHECK(s->faults[1].at_step == 4);
  CHECK(s->faults[1].what == scenario_fault::action::cont);
  CHECK(s->faults[2].ms == 300);
  CHECK(s->faults[2].steps == 2);
  CHECK(s->faults[3].what == scenario_fault::action::break_collective);
  CHECK(s->faults[4].method == "throw");
  CHECK(s->faults[5].what == scenario_fault::action::cut_link);
  CHECK(s->faults[5].node == 1);
  CHECK(s->faults[5].on_node());
  CHECK(s->faults[7].what == scenario_fault::action::kill_agent);
  CHECK(s->expect.what == scenario_expectation::outcome::recovered);
  CHECK(s->expect.within_ms == 4000);
}

TEST_CASE("defaults: fail policy, embedded, liveness and timeouts from the executor") {
  auto s = parse_scenario(R"({"cluster": {}, "expect": {"outcome": "start_error",
    "error": "model_failed", "contains": "load_model"}})",
                          "t");
  REQUIRE_MESSAGE(s, describe(s.error()));
  CHECK_FALSE(s->restart);
  CHECK(s->hosts == 0);
  CHECK(s->heartbeat_ms == 0);
  CHECK(s->step_timeout_ms == 0);
  CHECK(s->requests == 2);
  CHECK(s->expect.what == scenario_expectation::outcome::start_error);
  CHECK(s->expect.contains == "load_model");
}

TEST_CASE("bad values of the new fields name the file and the field") {
  CHECK(
    has(error_of(
          R"({"cluster": {"on_worker_failure": "retry"}, "expect": {"outcome": "success"}})"),
        "t.json: cluster.on_worker_failure must be \"fail\" or \"restart\", got \"retry\""));
  CHECK(has(error_of(R"({"cluster": {"hosts": -1}, "expect": {"outcome": "success"}})"),
            "cluster.hosts must be in [0, 8]"));
  CHECK(
    has(error_of(
          R"({"cluster": {"hosts": 2, "nodes": ["a:1"]}, "expect": {"outcome": "success"}})"),
        "exclude each other"));
  CHECK(has(error_of(R"({"cluster": {"heartbeat_ms": 500, "connection_timeout_ms": 600},
                         "expect": {"outcome": "success"}})"),
            "at least twice heartbeat_ms"));
  CHECK(has(error_of(
              R"({"cluster": {"step_timeout_ms": "1s"}, "expect": {"outcome": "success"}})"),
            "cluster.step_timeout_ms must be an integer"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"action": "cut_link", "node": 0}],
                         "expect": {"outcome": "success"}})"),
            "needs simulated hosts: set cluster.hosts"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"action": "kill_agent"}],
                         "expect": {"outcome": "success"}})"),
            "kill_agent acts on a simulated host"));
  CHECK(
    has(error_of(R"({"cluster": {"hosts": 2}, "faults": [{"action": "kill_agent", "node": 2}],
                         "expect": {"outcome": "success"}})"),
        "faults[0].node must be in [0, 1]"));
  CHECK(
    has(error_of(R"({"cluster": {}, "faults": [{"action": "kill", "at_step": 0, "at_ms": 5}],
                         "expect": {"outcome": "success"}})"),
        "has both at_step and at_ms"));
  CHECK(has(error_of(
              R"({"cluster": {}, "faults": [{"rank": 0}], "expect": {"outcome": "success"}})"),
            "faults[0].action is required"));
  CHECK(has(
    error_of(
      R"({"cluster": {}, "faults": [{"action": "delay"}], "expect": {"outcome": "success"}})"),
    "faults[0].ms is required for delay"));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "recovered"}})"),
            "needs cluster.on_worker_failure \"restart\""));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "start_error"}})"),
            "expect.error is required when the outcome is \"start_error\""));
  CHECK(
    has(error_of(R"({"cluster": {}, "expect": {"outcome": "success", "error": "timeout"}})"),
        "expect.error only applies"));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "error", "error": "timeout",
                         "later_steps_succeed": 1}})"),
            "expect.later_steps_succeed must be true or false"));
  CHECK(
    has(error_of(R"({"cluster": {}, "expect": {"outcome": "error", "error": "worker_lots"}})"),
        "expect.error names an unknown error kind \"worker_lots\" (kinds: invalid_argument"));
  CHECK(has(error_of(
              R"({"cluster": {}, "expect": {"outcome": "error", "error": "worker_lost|"}})"),
            "unknown error kind \"\""));
  auto alt = parse_scenario(R"({"cluster": {}, "expect": {"outcome": "error",
                                "error": "worker_lost|transport_failed"}})",
                            "t");
  REQUIRE_MESSAGE(alt, describe(alt.error()));
  CHECK(alt->expect.error == "worker_lost|transport_failed");
  CHECK(has(error_of(R"({"cluster": {}, "steps": 0, "expect": {"outcome": "success"}})"),
            "t.json: steps must be in [1, 1000]"));
}

TEST_CASE("start-up faults: during a phase, at once or at_ms into it") {
  auto s = parse_scenario(R"({"cluster": {"tp": 2, "on_worker_failure": "restart"},
    "faults": [{"during": "load_model", "at_ms": 300, "action": "kill", "rank": 0},
               {"during": "init_device", "action": "stop", "rank": 1},
               {"during": "update_environment", "action": "continue", "rank": 1}],
    "expect": {"outcome": "start_error", "error": "worker_lost",
               "contains": "start-up failed in load_model", "within_ms": 1000}})",
                          "t.json");
  REQUIRE_MESSAGE(s, describe(s.error()));
  REQUIRE(s->faults.size() == 3);
  REQUIRE(s->faults[0].during);
  CHECK(*s->faults[0].during == startup_phase::load_model);
  CHECK(s->faults[0].at_ms == 300);
  CHECK(s->faults[0].what == scenario_fault::action::kill);
  CHECK(*s->faults[1].during == startup_phase::init_device);
  CHECK(s->faults[1].at_ms == -1); // at once, as the phase begins
  CHECK(*s->faults[2].during == startup_phase::update_environment);
  CHECK(s->expect.within_ms == 1000);
  // Run-time faults have no phase.
  auto run = parse_scenario(R"({"cluster": {}, "faults": [{"action": "kill"}],
    "expect": {"outcome": "success"}})",
                            "t");
  REQUIRE(run);
  CHECK_FALSE(run->faults[0].during);
}

TEST_CASE("start-up faults that cannot happen are refused, naming the field") {
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"during": "warm_up", "action": "kill"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].during must be a start-up phase (placement, spawn_workers, "
            "rank_workers, update_environment, init_worker, init_device, load_model, "
            "compile_dataflow), got \"warm_up\""));
  CHECK(has(error_of(R"({"cluster": {}, "steps": 2,
                         "faults": [{"during": "load_model", "at_step": 1, "action": "kill"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0] has both during and at_step"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"during": "load_model",
                         "action": "delay", "ms": 5}], "expect": {"outcome": "success"}})"),
            "delay calls a worker method, which needs a started executor"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"during": "placement", "action": "kill"}],
                         "expect": {"outcome": "success"}})"),
            "kill signals a rank, whose process is known once the workers are ranked"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"during": 3, "action": "kill"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].during must be a string"));
  // Node actions need no pid: any phase, on simulated hosts.
  auto s = parse_scenario(R"({"cluster": {"tp": 2, "hosts": 2},
    "faults": [{"during": "placement", "action": "stop_agent", "node": 1}],
    "expect": {"outcome": "start_error", "error": "node_lost|timeout"}})",
                          "t");
  REQUIRE_MESSAGE(s, describe(s.error()));
  CHECK(*s->faults[0].during == startup_phase::placement);
}

TEST_CASE("agent actions: kill_agent with a signal, stop_agent, continue_agent") {
  auto s = parse_scenario(R"({"cluster": {"tp": 2, "hosts": 2},
    "faults": [{"at_ms": 100, "action": "stop_agent", "node": 1},
               {"at_ms": 200, "action": "continue_agent", "node": 1},
               {"at_ms": 300, "action": "kill_agent", "node": 1, "signal": 15}],
    "expect": {"outcome": "error", "error": "worker_lost"}})",
                          "t");
  REQUIRE_MESSAGE(s, describe(s.error()));
  CHECK(s->faults[0].what == scenario_fault::action::stop_agent);
  CHECK(s->faults[0].on_node());
  CHECK(s->faults[0].is_fault());
  CHECK(s->faults[1].what == scenario_fault::action::continue_agent);
  CHECK_FALSE(s->faults[1].is_fault());
  CHECK(s->faults[2].signal == 15);
  CHECK(std::string(to_string(s->faults[1].what)) == "continue_agent");
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"action": "stop_agent"}],
                         "expect": {"outcome": "success"}})"),
            "stop_agent acts on a simulated host"));
}
