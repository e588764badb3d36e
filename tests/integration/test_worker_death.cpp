// A worker process that dies mid-call fails the pending collective_rpc at once with an
// error naming its rank and node (what the README promises), and later calls fail fast.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "processes.hpp"

using namespace cafex;
using test::worker_pid;
using namespace std::chrono_literals;

TEST_CASE("a worker killed mid-call fails the pending call at once, naming rank and node") {
  test::become_subreaper();
  executor_options o;
  o.parallel.tensor_parallel_size = 2;
  o.worker_program = test::binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "off";
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  auto node = (*ex)->plan().workers.at(1).node_id;
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  // Both ranks sleep 20 s; the call would time out only after 60 s.
  auto pending = (*ex)->collective_rpc_async("sleep_ms", {{"ms", 20000}}, 60s);
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(kill(victim, SIGKILL) == 0);
  REQUIRE(pending.wait_for(5s) == std::future_status::ready);
  auto took = std::chrono::steady_clock::now() - t0;
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  auto what = describe(r.error());
  CHECK_MESSAGE(what.find("rank 1") != std::string::npos, what);
  CHECK_MESSAGE(what.find(node) != std::string::npos, what);
  MESSAGE(
    "failed after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                    << " ms: " << what);
  // Later calls fail at once too.
  auto again = (*ex)->collective_rpc("noop");
  REQUIRE_FALSE(again);
  CHECK(code_of(again.error()) == errc::worker_lost);
  (*ex)->shutdown();
  test::reap_zombies();
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    15s));
}
