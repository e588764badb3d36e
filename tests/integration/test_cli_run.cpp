// `cafex run` end to end with real worker processes: output, exit code, no orphans.
#include <doctest/doctest.h>

#include <csignal>
#include <sys/wait.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

nlohmann::json run_json(const std::vector<std::string>& extra) {
  std::vector<std::string> argv{test::binary_from_env("CAFEX_BIN"), "run", "--json",
                                "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = test::run_command(argv, 120s);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}

} // namespace

TEST_CASE("cafex run --json prints the tokens and latencies, and leaves nothing behind") {
  test::become_subreaper();
  auto j = run_json({"--tp", "2", "--steps", "5", "--batch", "3", "--seed", "11"});
  CHECK(j["tp"] == 2);
  CHECK(j["pp"] == 1);
  CHECK(j["steps"] == 5);
  REQUIRE(j["tokens"].size() == 5);
  for (auto& step : j["tokens"])
    CHECK(step.size() == 3);
  CHECK(j["step_latency_us"]["p50"].get<double>() > 0);
  CHECK(j["step_latency_us"]["p99"].get<double>()
        >= j["step_latency_us"]["p50"].get<double>());
  // Every worker was a child of `cafex run`; orphans would be re-parented to us.
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    3s));
  // Every PP x TP shape gives the same tokens as one process (issue 3).
  for (auto shape : std::vector<std::pair<const char*, const char*>>{
         {"1", "1"}, {"1", "2"}, {"2", "2"}, {"1", "3"}}) {
    auto other = run_json({"--tp", shape.first, "--pp", shape.second, "--steps", "5",
                           "--batch", "3", "--seed", "11"});
    INFO("tp=" << shape.first << " pp=" << shape.second);
    CHECK(other["tokens"] == j["tokens"]);
    CHECK(other["pp"] == std::atoi(shape.second));
  }
  // Without the direct lane and without spinning: the same tokens.
  auto actors = run_json({"--tp", "2", "--steps", "5", "--batch", "3", "--seed", "11",
                          "--no-direct-lane", "--hot-spin", "0"});
  CHECK(actors["tokens"] == j["tokens"]);
}

TEST_CASE("cafex run prints a line per step and a summary") {
  auto r = test::run_command({test::binary_from_env("CAFEX_BIN"), "run", "--steps", "3"},
                             120s);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("step 0:") != std::string::npos);
  CHECK(r.out.find("step 2:") != std::string::npos);
  CHECK(r.out.find("done: 3 step(s)") != std::string::npos);
}

TEST_CASE("bad flags exit 2 with one error line") {
  auto bin = test::binary_from_env("CAFEX_BIN");
  for (auto args :
       std::vector<std::vector<std::string>>{{"--tp", "0"},
                                             {"--tp", "x"},
                                             {"--device", "tpu"},
                                             {"--bogus"},
                                             {"--strategy", "diagonal"},
                                             {"--devices", "1", "--tp", "2"},
                                             {"--channel", "ray"},
                                             {"--tp-transport", "rdma"},
                                             {"--bundle-indices", "0,0", "--tp", "2"},
                                             {"--enforce-eager"},
                                             {"--hot-spin", "-1"},
                                             {"--hot-spin", "2000000"},
                                             {"--random-weights"}}) {
    std::vector<std::string> argv{bin, "run"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = test::run_command(argv, 60s);
    INFO(args.front() << " -> " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("error: ", 0) == 0);
  }
}

TEST_CASE("every subcommand has --help") {
  auto bin = test::binary_from_env("CAFEX_BIN");
  for (auto cmd : {"run", "node", "plan", "worker"}) {
    auto r = test::run_command({bin, cmd, "--help"}, 30s);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("usage") != std::string::npos);
  }
}

TEST_CASE("a driver killed with SIGKILL leaves no worker behind") {
  test::become_subreaper();
  auto bin = test::binary_from_env("CAFEX_BIN");
  pid_t run = test::start_background(
    {bin, "run", "--tp", "2", "--steps", "1000000", "--log-level", "off"});
  // Wait until both workers exist (children of the run process) before killing it.
  REQUIRE(test::wait_until([&] { return test::children_of(run).size() >= 2; }, 30s));
  auto workers = test::children_of(run);
  kill(run, SIGKILL);
  waitpid(run, nullptr, 0);
  CHECK(test::wait_until(
    [&] {
      test::reap_zombies();
      for (auto w : workers)
        if (kill(w, 0) == 0)
          return false;
      return true;
    },
    2s));
}

TEST_CASE("cafex node refuses bad device flags with one error line") {
  auto bin = test::binary_from_env("CAFEX_BIN");
  for (auto args : std::vector<std::vector<std::string>>{{"--gpus", "3"},
                                                         {"--gpus", "auto", "--devices", "2"},
                                                         {"--devices", "0"},
                                                         {"--listen", "nonsense"}}) {
    std::vector<std::string> argv{bin, "node"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = test::run_command(argv, 30s);
    INFO(args.front() << " -> " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("error: ", 0) == 0);
  }
}

TEST_CASE(
  "cafex run --on-worker-failure restart survives a killed worker with the same tokens") {
  test::become_subreaper();
  auto bin = test::binary_from_env("CAFEX_BIN");
  const std::vector<std::string> common{"--tp",    "2", "--steps", "400",
                                        "--batch", "2", "--seed",  "4"};
  auto want = run_json(common);
  auto out = "/tmp/cafex-run-restart-" + std::to_string(getpid()) + ".out";
  std::vector<std::string> argv{bin,      "run", "--log-level", "warn", "--on-worker-failure",
                                "restart"};
  argv.insert(argv.end(), common.begin(), common.end());
  auto err = out + ".err";
  pid_t run = test::start_background(argv, out, err);
  // Kill rank 1 once steps are flowing (a per-step line is printed).
  REQUIRE(test::wait_until(
    [&] { return test::read_file(out).find("step 20:") != std::string::npos; }, 60s));
  pid_t victim = -1;
  for (auto pid : test::children_of(run)) {
    auto cmd = test::read_file("/proc/" + std::to_string(pid) + "/cmdline");
    if (cmd.find(std::string("--rank") + '\0' + "1" + '\0') != std::string::npos)
      victim = pid;
  }
  REQUIRE(victim > 0);
  REQUIRE(kill(victim, SIGKILL) == 0);
  int status = -1;
  REQUIRE(test::wait_until([&] { return waitpid(run, &status, WNOHANG) == run; }, 60s));
  auto text = test::read_file(out);
  auto log = test::read_file(err);
  unlink(out.c_str());
  unlink(err.c_str());
  // The kill landed while steps ran: one step failed and the run waited for recovery.
  CHECK_MESSAGE(log.find("waiting for recovery") != std::string::npos, log);
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                text.substr(text.size() > 2000 ? text.size() - 2000 : 0));
  // Every step's tokens, in order, equal the run without the failure.
  std::vector<nlohmann::json> got;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    auto at = line.find("tokens ");
    if (line.rfind("step ", 0) == 0 && at != std::string::npos)
      got.push_back(nlohmann::json::parse(line.substr(at + 7, line.find(']', at) - at - 6)));
  }
  REQUIRE(got.size() == want["tokens"].size());
  for (size_t k = 0; k < got.size(); ++k) {
    CAPTURE(k);
    CHECK(got[k] == want["tokens"][k]);
  }
}
