// The verdict of `cafex chaos` (chaos/report.cpp) on made-up runs: each outcome
// passes only when everything it checks holds, and says why when it fails.
#include <doctest/doctest.h>

#include "chaos/runner.hpp"
#include "runtime/error.hpp"

using namespace cafex;

namespace {

scenario parse(const std::string& text) {
  auto s = parse_scenario(text, "t.json");
  REQUIRE_MESSAGE(s, describe(s.error()));
  return *s;
}

chaos_run started(int steps_ok) {
  chaos_run r;
  r.started = true;
  r.steps_ok = steps_ok;
  r.tokens = {{1, 2, 3}, {4, 5, 6}};
  return r;
}

chaos_run failed_with(const std::string& kind, const std::string& text, int64_t ms,
                      int steps_ok = 1) {
  auto r = started(steps_ok);
  r.saw_error = true;
  r.error_kind = kind;
  r.error_text = text;
  r.fault_to_error_ms = ms;
  return r;
}

chaos_report judged(const scenario& s, chaos_run faulty, bool compared = false,
                    bool same = true) {
  chaos_report rep;
  rep.faulty = std::move(faulty);
  rep.compared_tokens = compared;
  rep.same_tokens = same;
  if (compared)
    rep.baseline = started(s.steps);
  judge(s, rep);
  return rep;
}

bool has(const std::string& t, const std::string& p) {
  return t.find(p) != std::string::npos;
}

} // namespace

TEST_CASE("error: kind, text and time bound must all hold") {
  auto s = parse(R"({"cluster": {"tp": 2}, "expect": {"outcome": "error",
    "error": "worker_lost", "contains": "signal 9", "within_ms": 1000}})");
  CHECK(judged(s, failed_with("worker_lost", "killed by signal 9", 3)).pass);
  auto kind = judged(s, failed_with("timeout", "killed by signal 9", 3));
  CHECK_FALSE(kind.pass);
  CHECK(has(kind.reason, "expected error kind worker_lost, got timeout"));
  auto text = judged(s, failed_with("worker_lost", "killed by signal 15", 3));
  CHECK_FALSE(text.pass);
  CHECK(has(text.reason, "does not contain \"signal 9\""));
  auto late = judged(s, failed_with("worker_lost", "killed by signal 9", 1001));
  CHECK_FALSE(late.pass);
  CHECK(has(late.reason, "1001 ms after the fault, over the bound of 1000 ms"));
  auto early = judged(s, failed_with("worker_lost", "killed by signal 9", -1));
  CHECK_FALSE(early.pass);
  CHECK(has(early.reason, "before any fault was applied"));
  auto none = judged(s, started(4));
  CHECK_FALSE(none.pass);
  CHECK(has(none.reason, "none reached the caller"));
  chaos_run no_start;
  no_start.start_error_kind = "spawn_failed";
  CHECK_FALSE(judged(s, no_start).pass);
}

TEST_CASE("error: alternatives and later steps") {
  auto s = parse(R"({"cluster": {"tp": 2}, "steps": 4, "expect": {"outcome": "error",
    "error": "worker_lost|transport_failed", "later_steps_succeed": true}})");
  CHECK(judged(s, failed_with("transport_failed", "x", 5, 4)).pass);
  CHECK(judged(s, failed_with("worker_lost", "x", 5, 4)).pass);
  CHECK_FALSE(judged(s, failed_with("timeout", "x", 5, 4)).pass);
  auto stopped = judged(s, failed_with("worker_lost", "x", 5, 2));
  CHECK_FALSE(stopped.pass);
  CHECK(has(stopped.reason, "later steps did not all succeed"));
}

TEST_CASE("success: every step, no error, and the baseline's tokens") {
  auto s = parse(R"({"cluster": {}, "steps": 4, "expect": {"outcome": "success"}})");
  CHECK(judged(s, started(4), true, true).pass);
  auto differ = judged(s, started(4), true, false);
  CHECK_FALSE(differ.pass);
  CHECK(has(differ.reason, "tokens differ"));
  CHECK_FALSE(judged(s, started(3), true, true).pass);
  auto err = judged(s, failed_with("method_failed", "boom", 1, 4), true, true);
  CHECK_FALSE(err.pass);
  CHECK(has(err.reason, "expected success, got method_failed"));
}

TEST_CASE("start_error: start-up must fail with the kind") {
  auto s = parse(R"({"cluster": {"tp": 2}, "expect": {"outcome": "start_error",
    "error": "model_failed", "contains": "rank 1"}})");
  chaos_run r;
  r.start_error_kind = "model_failed";
  r.start_error_text = "rank 1 was told to fail load_model";
  CHECK(judged(s, r).pass);
  r.start_error_kind = "spawn_failed";
  CHECK_FALSE(judged(s, r).pass);
  auto ran = judged(s, started(4));
  CHECK_FALSE(ran.pass);
  CHECK(has(ran.reason, "but it succeeded"));
}

TEST_CASE("recovered: an error, ready again in time, every step, same tokens") {
  auto s = parse(R"({"cluster": {"tp": 2, "on_worker_failure": "restart"}, "steps": 6,
    "expect": {"outcome": "recovered", "within_ms": 5000}})");
  auto ok = failed_with("worker_lost", "killed", 2, 6);
  ok.recovery_ms = 150;
  CHECK(judged(s, ok, true, true).pass);
  CHECK_FALSE(judged(s, ok, true, false).pass);
  auto slow = ok;
  slow.recovery_ms = 5001;
  CHECK(has(judged(s, slow, true, true).reason, "over the bound of 5000 ms"));
  auto never = ok;
  never.recovery_ms = -1;
  never.note = "state() was failed, not ready";
  auto n = judged(s, never, true, true);
  CHECK_FALSE(n.pass);
  CHECK(has(n.reason, "did not recover: state() was failed"));
  auto short_run = ok;
  short_run.steps_ok = 5;
  CHECK_FALSE(judged(s, short_run, true, true).pass);
  CHECK_FALSE(judged(s, started(6), true, true).pass); // nothing failed: no recovery seen
  // A baseline that failed makes the comparison meaningless: fail, naming it.
  chaos_report rep;
  rep.faulty = ok;
  rep.compared_tokens = true;
  rep.baseline = failed_with("timeout", "slow", 1);
  judge(s, rep);
  CHECK_FALSE(rep.pass);
  CHECK(has(rep.reason, "baseline run (no faults) failed"));
}
