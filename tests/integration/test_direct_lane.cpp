// The direct lane: blocking execute_model calls and collective_rpc on a compiled
// same-node dataflow run on the caller's thread over the shared-memory rings. They give
// the actor path's results, keep submission order behind asynchronous steps, and keep
// every failure path: a deadline names the stuck stage or rank, a killed worker fails
// the step or call within the liveness bound, a teardown from another thread ends the
// step, and nothing is left behind.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <future>
#include <thread>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"
#include "runtime/models/workload.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::vector<std::vector<int32_t>> tokens_of(int tp, int pp, bool direct, int steps,
                                            uint64_t* direct_steps = nullptr) {
  auto o = test::test_options(tp, pp);
  o.direct_lane = direct;
  o.model.seed = 5;
  auto ex = test::start_or_fail(o);
  demo_workload work(3, 4, o.model.vocab_size);
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < steps; ++s) {
    auto r = ex->execute_model(work.next_step());
    REQUIRE_MESSAGE(r, describe(r.error()));
    work.observe(*r);
    out.push_back(r->sampled);
  }
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK((*stats)["steps_ok"].get<uint64_t>() == static_cast<uint64_t>(steps));
  if (direct_steps)
    *direct_steps = (*stats)["direct_steps"].get<uint64_t>();
  return out;
}

/// A direct step is on the lane (within 5 s).
bool lane_running(executor& ex) {
  return test::wait_until(
    [&] {
      auto stats = ex.dataflow_stats();
      return stats && (*stats)["direct_running"] == true;
    },
    5s);
}

/// A counter of dataflow_stats(): "direct_steps" or "direct_calls".
uint64_t lane_count(executor& ex, const char* key) {
  auto stats = ex.dataflow_stats();
  REQUIRE(stats);
  return (*stats)[key].get<uint64_t>();
}

uint64_t direct_steps(executor& ex) {
  return lane_count(ex, "direct_steps");
}

uint64_t direct_calls(executor& ex) {
  return lane_count(ex, "direct_calls");
}

} // namespace

TEST_CASE("blocking steps take the direct lane and give the actor path's tokens") {
  test::become_subreaper();
  for (auto [tp, pp] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
    INFO("tp=" << tp << " pp=" << pp);
    uint64_t direct = 0, via_actors = 0;
    auto lane = tokens_of(tp, pp, true, 6, &direct);
    auto actors = tokens_of(tp, pp, false, 6, &via_actors);
    CHECK(lane == actors);
    CHECK(direct == 5); // the first step compiles the dataflow through the driver
    CHECK(via_actors == 0);
  }
}

TEST_CASE("a blocking call waits behind asynchronous steps, in submission order") {
  test::become_subreaper();
  auto o = test::test_options(1, 2);
  o.model.name = "sleepy";
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::sleepy_step(0, 0)));
  REQUIRE(ex->execute_model(test::sleepy_step(1, 0)));
  auto lane_before = direct_steps(*ex);
  CHECK(lane_before == 1);
  auto slow = ex->execute_model_async(test::sleepy_step(2, 300));
  auto r = ex->execute_model(test::sleepy_step(3, 0));
  REQUIRE_MESSAGE(r, describe(r.error()));
  CHECK(r->step_id == 3);
  // The asynchronous step was answered first: the blocking one went behind it.
  REQUIRE(slow.wait_for(0s) == std::future_status::ready);
  CHECK(slow.get());
  CHECK(direct_steps(*ex) == lane_before);
  // Nothing in flight again: the lane is free.
  REQUIRE(ex->execute_model(test::sleepy_step(4, 0)));
  CHECK(direct_steps(*ex) == lane_before + 1);
}

TEST_CASE("asynchronous steps submitted while a direct step runs wait for it") {
  test::become_subreaper();
  auto o = test::test_options(1, 1);
  o.model.name = "sleepy";
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::sleepy_step(0, 0)));
  auto blocking = std::async(std::launch::async,
                             [&] { return ex->execute_model(test::sleepy_step(1, 1000)); });
  REQUIRE(lane_running(*ex));
  // The blocking call is on the lane: these go through the driver and wait for it.
  std::vector<std::future<caf::expected<model_runner_output>>> later;
  for (uint64_t id = 2; id < 5; ++id)
    later.push_back(ex->execute_model_async(test::sleepy_step(id, 0)));
  CHECK(later.front().wait_for(100ms) == std::future_status::timeout);
  auto b = blocking.get();
  REQUIRE_MESSAGE(b, describe(b.error()));
  for (auto& f : later) {
    REQUIRE(f.wait_for(10s) == std::future_status::ready);
    auto r = f.get();
    CHECK_MESSAGE(r, describe(r.error()));
  }
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK((*stats)["steps_ok"].get<uint64_t>() == 5);
  CHECK((*stats)["in_flight"].get<uint64_t>() == 0);
}

TEST_CASE("a direct step that misses its deadline names the stage, and the next one runs") {
  test::become_subreaper();
  auto o = test::test_options(1, 2);
  o.model.name = "sleepy";
  o.step_timeout = 300ms;
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::sleepy_step(0, 0))); // compiles; later steps go direct
  auto t0 = steady::now();
  auto r = ex->execute_model(test::sleepy_step(1, 1500));
  CHECK(steady::now() - t0 < 1200ms);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
  CHECK_MESSAGE(describe(r.error()).find("step 1 missed its 300 ms deadline: stage 0 rank(s) "
                                         "[0]")
                  != std::string::npos,
                describe(r.error()));
  // Steps queue behind step 1 in the stage still running it, and may miss their own
  // deadline meanwhile; once it is through, a step gets its own answer, never step 1's
  // late one.
  uint64_t id = 2;
  caf::expected<model_runner_output> next{caf::error{}};
  REQUIRE(test::wait_until(
    [&] {
      next = ex->execute_model(test::sleepy_step(id++, 0));
      return static_cast<bool>(next);
    },
    10s));
  CHECK(next->step_id == id - 1);
  CHECK(direct_steps(*ex) == id - 1);
}

TEST_CASE("a worker killed during a direct step fails it at once, naming the rank") {
  test::become_subreaper();
  auto o = test::test_options(2, 1);
  o.model.name = "sleepy";
  o.log_level = "off";
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::sleepy_step(0, 0)));
  pid_t victim = test::worker_pid(1);
  REQUIRE(victim > 0);
  auto pending = std::async(std::launch::async,
                            [&] { return ex->execute_model(test::sleepy_step(1, 20000)); });
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(victim, SIGKILL) == 0);
  // The step deadline is 300 s: only the failure path answers within the bound.
  auto bound = o.liveness.connection_timeout + o.liveness.cause_timeout + 1s;
  REQUIRE(pending.wait_for(bound) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  CHECK_MESSAGE(describe(r.error()).find("rank 1") != std::string::npos, describe(r.error()));
  MESSAGE("direct step failed "
          << std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count()
          << " ms after the SIGKILL: " << describe(r.error()));
  auto late = ex->execute_model(test::sleepy_step(2, 0));
  REQUIRE_FALSE(late);
  CHECK(code_of(late.error()) == errc::worker_lost);
  ex->shutdown();
  test::no_children_left();
}

TEST_CASE("a teardown from another thread ends the direct step and the next one compiles") {
  test::become_subreaper();
  auto o = test::test_options(2, 2);
  o.model.name = "sleepy";
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::sleepy_step(0, 0)));
  auto pending = std::async(std::launch::async,
                            [&] { return ex->execute_model(test::sleepy_step(1, 1000)); });
  REQUIRE(lane_running(*ex));
  auto t0 = steady::now();
  REQUIRE_FALSE(ex->teardown_dataflow());
  // The step fails at once; the teardown itself waits for the ranks to let go (after
  // their 1 s model step) and for the rebuilt communicators.
  REQUIRE(pending.wait_for(0s) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::not_ready);
  CHECK(steady::now() - t0 < 10s);
  auto next = ex->execute_model(test::sleepy_step(2, 0));
  REQUIRE_MESSAGE(next, describe(next.error()));
  auto again = ex->execute_model(test::sleepy_step(3, 0));
  REQUIRE_MESSAGE(again, describe(again.error()));
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK_MESSAGE((*stats)["direct_steps"].get<uint64_t>() == 2, stats->dump());
}

TEST_CASE("collective_rpc on a compiled same-node dataflow answers over the rings") {
  test::become_subreaper();
  auto o = test::test_options(2, 2);
  o.log_level = "off";
  auto ex = test::start_or_fail(o);
  auto before = ex->collective_rpc("rank_info", nullptr); // not compiled yet: the actors
  REQUIRE_MESSAGE(before, describe(before.error()));
  CHECK(direct_calls(*ex) == 0);
  REQUIRE(ex->execute_model(test::prefill(0)));
  auto info = ex->collective_rpc("rank_info", nullptr);
  REQUIRE_MESSAGE(info, describe(info.error()));
  CHECK(*info == *before); // the same answers, in rank order
  CHECK(direct_calls(*ex) == 1);
  auto one = ex->collective_rpc("echo", {{"x", 7}}, {}, 2);
  REQUIRE_MESSAGE(one, describe(one.error()));
  REQUIRE(one->size() == 1);
  CHECK(one->at(0)["x"] == 7);
  auto failed = ex->collective_rpc("fail_on", 3);
  REQUIRE_FALSE(failed);
  CHECK(code_of(failed.error()) == errc::method_failed);
  CHECK(describe(failed.error()).find("rank 3 was told to fail") != std::string::npos);
  auto t0 = steady::now();
  auto slow = ex->collective_rpc("sleep_ms", {{"ms", 2000}}, 300ms);
  CHECK(steady::now() - t0 < 1500ms);
  REQUIRE_FALSE(slow);
  CHECK(code_of(slow.error()) == errc::timeout);
  CHECK_MESSAGE(describe(slow.error()).find("rank 0 on node") != std::string::npos,
                describe(slow.error()));
  // The late replies of the call that timed out are not taken for this one's.
  auto after = ex->collective_rpc("rank_info", nullptr, 10s);
  REQUIRE_MESSAGE(after, describe(after.error()));
  CHECK(*after == *before);
  CHECK(direct_calls(*ex) == 5);
}

TEST_CASE("a worker killed during a call on the rings fails it at once") {
  test::become_subreaper();
  auto o = test::test_options(2, 1);
  o.log_level = "off";
  auto ex = test::start_or_fail(o);
  REQUIRE(ex->execute_model(test::prefill(0)));
  pid_t victim = test::worker_pid(1);
  REQUIRE(victim > 0);
  auto pending = std::async(std::launch::async, [&] {
    return ex->collective_rpc("sleep_ms", {{"ms", 20000}}, 60s);
  });
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  REQUIRE(kill(victim, SIGKILL) == 0);
  auto bound = o.liveness.connection_timeout + o.liveness.cause_timeout + 1s;
  REQUIRE(pending.wait_for(bound) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  CHECK_MESSAGE(describe(r.error()).find("rank 1") != std::string::npos, describe(r.error()));
  CHECK(direct_calls(*ex) == 1);
  ex->shutdown();
  test::no_children_left();
}

TEST_CASE("a hot_spin outside 0 to 1 s is refused at start-up, naming the option") {
  test::become_subreaper();
  for (auto spin : {std::chrono::microseconds{-1}, std::chrono::microseconds{2000000}}) {
    auto o = test::test_options(1, 1);
    o.hot_spin = spin;
    auto ex = executor::start(o);
    REQUIRE_FALSE(ex);
    CHECK(code_of(ex.error()) == errc::invalid_argument);
    CHECK_MESSAGE(describe(ex.error()).find("hot_spin must be between 0 and 1 s")
                    != std::string::npos,
                  describe(ex.error()));
  }
  test::no_children_left();
}
