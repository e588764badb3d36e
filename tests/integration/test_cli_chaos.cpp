// `cafex chaos` end to end: exit 0 when the outcome matches, 1 when it differs (so a
// wrong expectation fails), 2 for bad files and flags with a clear message; the JSON
// report; nothing left running, nothing left stopped.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

struct scenario_dir {
  std::string dir;
  scenario_dir() {
    char tmpl[] = "/tmp/cafex-chaos-test-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~scenario_dir() { test::run_command({"/bin/rm", "-rf", dir}); }
  std::string write(const std::string& name, const std::string& text) const {
    auto path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

test::command_result chaos(std::vector<std::string> args) {
  std::vector<std::string> argv{test::binary_from_env("CAFEX_BIN"), "chaos"};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run_command(argv, 120s);
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void nothing_left() {
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    15s));
}

const char* kill_rank1 = R"({"name": "k", "cluster": {"tp": 2}, "steps": 8,
  "step_sleep_ms": 300, "faults": [{"at_ms": 450, "action": "kill", "rank": 1}], )";

} // namespace

TEST_CASE("bad flags and bad files exit 2 with one clear error line") {
  scenario_dir d;
  auto none = chaos({});
  CHECK(none.exit_code == 2);
  CHECK_MESSAGE(has(none.err, "needs a scenario file"), none.err);
  auto two = chaos({"a.json", "b.json"});
  CHECK(two.exit_code == 2);
  CHECK(has(two.err, "runs one scenario"));
  auto flag = chaos({"--bogus", "x.json"});
  CHECK(flag.exit_code == 2);
  auto missing = chaos({d.dir + "/missing.json"});
  CHECK(missing.exit_code == 2);
  CHECK(has(missing.err, "cannot read scenario file"));
  auto not_json = chaos({d.write("bad.json", "{")});
  CHECK(not_json.exit_code == 2);
  CHECK(has(not_json.err, "bad.json is not JSON"));
  auto bad_field = chaos({d.write("f.json", R"({"cluster": {"tp": 2, "pipeline": 2},
    "expect": {"outcome": "success"}})")});
  CHECK(bad_field.exit_code == 2);
  CHECK_MESSAGE(has(bad_field.err, "f.json: cluster has unknown key \"pipeline\""),
                bad_field.err);
  CHECK(bad_field.out.empty());
  auto help = chaos({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(has(help.out, "--worker-program"));
}

TEST_CASE("a matching outcome exits 0 with a JSON report; a wrong expectation exits 1") {
  test::become_subreaper();
  scenario_dir d;
  auto right = chaos(
    {d.write("right.json", std::string(kill_rank1) + R"("expect": {"outcome": "error",
    "error": "worker_lost", "contains": "signal 9", "within_ms": 1000}})"),
     "--json"});
  INFO("stderr: " << right.err);
  REQUIRE(right.exit_code == 0);
  auto j = nlohmann::json::parse(right.out);
  CHECK(j["pass"] == true);
  CHECK(j["run"]["error"]["kind"] == "worker_lost");
  CHECK(j["run"]["error"]["fault_to_error_ms"].get<int64_t>() <= 1000);
  CHECK(j["run"]["faults_applied"].size() == 1);
  nothing_left();

  // The same fault judged against wrong expectations must fail.
  auto success = chaos(
    {d.write("s.json", std::string(kill_rank1) + R"("expect": {"outcome": "success"}})")});
  CHECK(success.exit_code == 1);
  CHECK_MESSAGE(has(success.out, "FAIL: expected success, got worker_lost"), success.out);
  auto kind = chaos(
    {d.write("k.json", std::string(kill_rank1)
                         + R"("expect": {"outcome": "error", "error": "timeout"}})")});
  CHECK(kind.exit_code == 1);
  CHECK(has(kind.out, "expected error kind timeout, got worker_lost"));
  auto text = chaos(
    {d.write("t.json", std::string(kill_rank1)
                         + R"("expect": {"outcome": "error", "error": "worker_lost",
    "contains": "signal 15"}})")});
  CHECK(text.exit_code == 1);
  CHECK(has(text.out, "does not contain \"signal 15\""));
  auto start = chaos({d.write("st.json", R"({"cluster": {"tp": 2},
    "expect": {"outcome": "start_error", "error": "model_failed"}})")});
  CHECK(start.exit_code == 1);
  CHECK(has(start.out, "expected start-up to fail with model_failed, but it succeeded"));
  nothing_left();
}

TEST_CASE("a stopped worker is continued before shutdown: nothing is left stopped") {
  test::become_subreaper();
  scenario_dir d;
  auto r = chaos({d.write("stop.json", R"({"cluster": {"tp": 2}, "steps": 4,
    "step_sleep_ms": 200, "faults": [{"at_ms": 100, "action": "stop", "rank": 1}],
    "expect": {"outcome": "error", "error": "worker_lost", "within_ms": 60000}})")});
  // Detected after the default 2 s connection timeout, then shut down cleanly.
  CHECK_MESSAGE(r.exit_code == 0, r.out << r.err);
  nothing_left();
}

TEST_CASE("restart policy: a SIGKILL during load_model fails start-up and says so") {
  test::become_subreaper();
  auto r = chaos(
    {std::string(CAFEX_SOURCE_DIR) + "/tests/scenarios/startup_kill_load_model_restart.json",
     "--json"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  CHECK(j["pass"] == true);
  auto run = j["run"];
  CHECK(run["started"] == false);
  REQUIRE(run["faults_applied"].size() == 1);
  auto fault = run["faults_applied"][0].get<std::string>();
  CHECK_MESSAGE(has(fault, "300 ms into load_model: kill rank 0 signal 9 (pid "), fault);
  CHECK(run["start_error"]["kind"] == "worker_lost");
  auto text = run["start_error"]["text"].get<std::string>();
  CHECK_MESSAGE(has(text, "start-up failed in load_model"), text);
  CHECK_MESSAGE(has(text, "rank 0"), text);
  CHECK_MESSAGE(has(text, "signal 9"), text);
  // Nothing promises a replacement: the restart policy starts once the executor is ready.
  CHECK_MESSAGE(!has(text, "the executor replaces it"), text);
  CHECK_MESSAGE(!has(text, "is replacing it"), text);
  CHECK_MESSAGE(!has(text, "resubmit"), text);
  CHECK(run["start_error"]["fault_to_error_ms"].get<int64_t>() <= 1000);
  nothing_left();
}

TEST_CASE("start-up faults: judged like any other, and missed when their phase ends first") {
  test::become_subreaper();
  scenario_dir d;
  // The same kill, against an expectation of success: start-up failed, so exit 1.
  auto wrong = chaos({d.write("w.json", R"({"cluster": {"tp": 2, "model": "slow_load"},
    "faults": [{"during": "load_model", "at_ms": 300, "action": "kill", "rank": 1}],
    "expect": {"outcome": "success", "same_tokens": false}})")});
  CHECK(wrong.exit_code == 1);
  CHECK_MESSAGE(has(wrong.out, "FAIL: start-up failed: worker_lost"), wrong.out);
  // sleepy loads in milliseconds: a fault 5 s into load_model never fires.
  auto missed = chaos({d.write("m.json", R"({"cluster": {"tp": 2},
    "faults": [{"during": "load_model", "at_ms": 5000, "action": "kill", "rank": 1}],
    "expect": {"outcome": "start_error", "error": "worker_lost"}})"),
                       "--json"});
  INFO("stderr: " << missed.err);
  CHECK(missed.exit_code == 1);
  auto j = nlohmann::json::parse(missed.out);
  CHECK_MESSAGE(has(j["reason"].get<std::string>(), "expected start-up to fail"), j["reason"]);
  REQUIRE(j["run"]["faults_applied"].size() == 1);
  CHECK_MESSAGE(has(j["run"]["faults_applied"][0].get<std::string>(),
                    "missed: kill during load_model at 5000 ms: load_model ended first"),
                j["run"]["faults_applied"][0]);
  // A SIGSTOP as init_device begins: liveness finds the rank unresponsive, start-up fails.
  auto stop = chaos(
    {std::string(CAFEX_SOURCE_DIR) + "/tests/scenarios/startup_stop_init_device.json",
     "--json"});
  INFO("stop: " << stop.out << stop.err);
  CHECK(stop.exit_code == 0);
  nothing_left();
}
