// Failure cases with real worker processes: each is detected within its bound, reported
// to the caller with rank, node and cause, and leaves no process behind. Every wait has a
// deadline; nothing sleeps as synchronisation.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"

using namespace cafex;
using test::worker_pid;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

executor_options options(int tp, const std::string& model = "sleepy") {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.worker_program = test::binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "off";
  o.model.name = model;
  return o;
}

long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("SIGKILL mid-step: the step fails fast naming rank, node and signal 9") {
  test::become_subreaper();
  auto ex = executor::start(options(2));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  auto node = (*ex)->plan().workers.at(1).node_id;
  REQUIRE((*ex)->execute_model(test::sleepy_step(0, 0))); // compiles the dataflow
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  auto pending = (*ex)->execute_model_async(test::sleepy_step(1, 20000));
  REQUIRE(pending.wait_for(100ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(victim, SIGKILL) == 0);
  // The step deadline is 300 s: only the failure path can answer within 2 s.
  REQUIRE(pending.wait_for(2s) == std::future_status::ready);
  auto took = ms_since(t0);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  auto what = describe(r.error());
  CHECK_MESSAGE(has(what, "rank 1"), what);
  CHECK_MESSAGE(has(what, node), what);
  CHECK_MESSAGE(has(what, "killed by signal 9"), what);
  MESSAGE("SIGKILL detected and reported in " << took << " ms: " << what);
  auto health = (*ex)->check_health();
  REQUIRE(health);
  CHECK(health->at(1).state == health_state::dead);
  CHECK(health->at(1).cause.what == failure_cause::kind::killed);
  CHECK(health->at(1).cause.code == SIGKILL);
  CHECK(health->at(0).state == health_state::healthy);
  CHECK(health->at(0).cause.what == failure_cause::kind::none);
  CHECK((*ex)->state() == executor_state::failed);
  (*ex)->shutdown();
  CHECK((*ex)->state() == executor_state::stopped);
  test::no_children_left();
}

TEST_CASE("SIGSTOP: the worker is reported unresponsive within the heartbeat bounds") {
  test::become_subreaper();
  auto o = options(2);
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  CHECK((*ex)->state() == executor_state::ready);
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  auto pending = (*ex)->collective_rpc_async("sleep_ms", {{"ms", 50}}, 60s);
  auto t0 = steady::now();
  REQUIRE(kill(victim, SIGSTOP) == 0);
  auto bound = o.liveness.connection_timeout + o.liveness.heartbeat_interval
               + o.liveness.cause_timeout + 1s;
  REQUIRE(pending.wait_for(bound) == std::future_status::ready);
  auto took = ms_since(t0);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  auto what = describe(r.error());
  CHECK(code_of(r.error()) == errc::worker_lost);
  CHECK_MESSAGE(has(what, "unresponsive: no heartbeat"), what);
  CHECK_MESSAGE(has(what, "stopped"), what);
  MESSAGE("SIGSTOP detected in " << took << " ms (connection timeout "
                                 << o.liveness.connection_timeout.count() << " ms): " << what);
  auto health = (*ex)->check_health();
  REQUIRE(health);
  CHECK(health->at(1).state == health_state::unresponsive);
  CHECK(health->at(1).cause.what == failure_cause::kind::unresponsive);
  CHECK(health->at(1).cause.stopped);
  CHECK((*ex)->state() == executor_state::degraded);
  kill(victim, SIGCONT);
  (*ex)->shutdown();
  test::no_children_left();
}

TEST_CASE("a throwing method reaches the caller and the worker survives") {
  test::become_subreaper();
  auto ex = executor::start(options(2));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  auto t = (*ex)->collective_rpc("throw");
  REQUIRE_FALSE(t);
  CHECK(has(describe(t.error()), "thrown on purpose"));
  auto f = (*ex)->collective_rpc("fail_on", 1);
  REQUIRE_FALSE(f);
  CHECK(code_of(f.error()) == errc::method_failed);
  CHECK((*ex)->collective_rpc("noop"));
  CHECK((*ex)->state() == executor_state::ready);
  (*ex)->shutdown();
  test::no_children_left();
}

TEST_CASE("load_model failing on rank 1 fails start-up cleanly, nothing left running") {
  test::become_subreaper();
  auto t0 = steady::now();
  auto ex = executor::start(options(2, "failing_load"));
  REQUIRE_FALSE(ex);
  auto what = describe(ex.error());
  CHECK_MESSAGE(has(what, "rank 1 was told to fail load_model"), what);
  MESSAGE("start-up failed in " << ms_since(t0) << " ms: " << what);
  test::no_children_left();
}

TEST_CASE("the embedded agent and its workers listen on no BASP port") {
  test::become_subreaper();
  auto ex = executor::start(options(1));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  // Workers reach the embedded agent through the socketpair it made for each: nothing
  // another local process could connect to (BASP before any secret was proven). This
  // process listens only for its rendezvous store, which waits for the peer to speak.
  auto ports = test::listening_ports(getpid());
  CHECK(ports.size() <= 1);
  for (auto p : ports)
    CHECK_FALSE(test::port_speaks_first(p));
  pid_t w = worker_pid(0);
  REQUIRE(w > 0);
  CHECK(test::listening_ports(w).empty());
  // The agent and its worker still serve the driver.
  CHECK((*ex)->collective_rpc("noop"));
  CHECK((*ex)->execute_model(test::sleepy_step(0, 0)));
  CHECK((*ex)->state() == executor_state::ready);
  (*ex)->shutdown();
  test::no_children_left();
}
