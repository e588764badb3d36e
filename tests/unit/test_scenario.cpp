// The scenario parser: good files become plain structs, bad files get errors that name
// the file, the field and what is allowed.
#include <doctest/doctest.h>

#include "runtime/error.hpp"
#include "runtime/scenario.hpp"

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
  CHECK_FALSE(s->expect.success);
  CHECK(s->expect.error == "worker_lost");
  CHECK(s->expect.within_ms == 2000);
}

TEST_CASE("a success scenario needs little") {
  auto s = parse_scenario(R"({"cluster": {"tp": 1}, "expect": {"outcome": "success"}})", "t");
  REQUIRE(s);
  CHECK(s->expect.success);
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
            "must be \"success\" or \"error\""));
  CHECK(has(error_of(R"({"cluster": {}, "expect": {"outcome": "error"}})"),
            "expect.error is required"));
  CHECK(has(error_of(R"({"cluster": {"tp": 2}, "faults": [{"action": "explode"}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].action must be kill, stop"));
  CHECK(has(error_of(R"({"cluster": {"tp": 2}, "faults": [{"action": "kill", "rank": 2}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].rank must be in [0, 1]"));
  CHECK(has(error_of(R"({"cluster": {}, "steps": 2, "faults": [{"action": "kill", "at_step": 5}],
                         "expect": {"outcome": "success"}})"),
            "faults[0].at_step must be in [0, 1]"));
  CHECK(has(error_of(R"({"cluster": {}, "faults": [{"action": "fail_method", "method": "x"}],
                         "expect": {"outcome": "success"}})"),
            "\"throw\" or \"fail_on\""));
  auto missing = load_scenario("/nonexistent/s.json");
  REQUIRE_FALSE(missing);
  CHECK(has(describe(missing.error()), "cannot read scenario file /nonexistent/s.json"));
}
