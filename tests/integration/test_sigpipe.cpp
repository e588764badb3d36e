// Every cafex process ignores SIGPIPE (issue #14, item 8): a surviving worker died of
// SIGPIPE 37 ms after its TP peer was SIGKILLed, because Gloo wrote to the dead peer's
// socket. The driver/host, the workers, `cafex node` and cafex-serve must all see EPIPE.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

/// Whether `pid` ignores SIGPIPE, from the SigIgn mask in /proc/<pid>/status.
bool ignores_sigpipe(pid_t pid) {
  std::istringstream in(test::read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("SigIgn:", 0) == 0)
      return (std::stoull(line.substr(7), nullptr, 16) >> (SIGPIPE - 1)) & 1U;
  return false;
}

/// Children inherit an ignored SIGPIPE across exec: give this process the default back,
/// so that each process under test shows only what it set itself.
void default_sigpipe() {
  std::signal(SIGPIPE, SIG_DFL);
}

/// A background cafex process, SIGTERMed (then SIGKILLed) and reaped when done.
struct background {
  pid_t pid = -1;
  std::string out;

  background(std::vector<std::string> argv, const std::string& tag) {
    test::become_subreaper();
    default_sigpipe();
    out = "/tmp/cafex-sigpipe-" + tag + "-" + std::to_string(getpid()) + ".out";
    pid = test::start_background(argv, out);
  }

  bool printed(const std::string& what) const {
    return test::read_file(out).find(what) != std::string::npos;
  }

  ~background() {
    kill(pid, SIGTERM);
    int st = 0;
    if (!test::wait_until([&] { return waitpid(pid, &st, WNOHANG) == pid; }, 40s)) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
    }
    test::wait_until(
      [] {
        test::reap_zombies();
        return test::children_of(getpid()).empty();
      },
      15s);
    unlink(out.c_str());
  }
};

} // namespace

TEST_CASE("the driver and every worker it starts ignore SIGPIPE") {
  test::become_subreaper();
  default_sigpipe();
  executor_options o;
  o.parallel.tensor_parallel_size = 2;
  o.worker_program = test::binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "off";
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  CHECK(ignores_sigpipe(getpid()));
  for (int rank = 0; rank < 2; ++rank) {
    pid_t w = test::worker_pid(rank);
    REQUIRE(w > 0);
    CHECK_MESSAGE(ignores_sigpipe(w), "worker rank " << rank << " would die of SIGPIPE");
  }
  (*ex)->shutdown();
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    15s));
}

TEST_CASE("cafex node ignores SIGPIPE") {
  background agent({test::binary_from_env("CAFEX_BIN"), "node", "--listen", "127.0.0.1:0",
                    "--devices", "1", "--log-level", "info"},
                   "node");
  REQUIRE(test::wait_until([&] { return agent.printed("listening"); }, 20s));
  CHECK(ignores_sigpipe(agent.pid));
}

TEST_CASE("cafex-serve and its workers ignore SIGPIPE") {
  background serve({test::binary_from_env("CAFEX_SERVE"), "--listen", "127.0.0.1:0", "--tp",
                    "2", "--log-level", "warn"},
                   "serve");
  REQUIRE(test::wait_until([&] { return serve.printed("listening on"); }, 90s));
  CHECK(ignores_sigpipe(serve.pid));
  auto workers = test::children_of(serve.pid);
  CHECK(workers.size() == 2);
  for (pid_t w : workers)
    CHECK_MESSAGE(ignores_sigpipe(w), "cafex-serve's worker " << w << " would die of SIGPIPE");
}
