// The executor with real worker processes on this machine (embedded node agent).
#include <doctest/doctest.h>

#include <chrono>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"
#include "runtime/models/workload.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

executor_options options(int tp, int pp = 1) {
  return test::test_options(tp, pp);
}

std::unique_ptr<executor> start(executor_options o) {
  return test::start_or_fail(std::move(o));
}

std::vector<std::vector<int32_t>> run_tokens(executor& ex, uint64_t seed, int batch,
                                             int steps) {
  demo_workload work(seed, batch, 512);
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < steps; ++s) {
    auto r = ex.execute_model(work.next_step());
    REQUIRE_MESSAGE(r, describe(r.error()));
    work.observe(*r);
    out.push_back(r->sampled);
  }
  return out;
}

} // namespace

TEST_CASE("start-up runs the seed's lifecycle and ranks every worker") {
  test::become_subreaper();
  auto ex = start(options(2));
  const auto& plan = ex->plan();
  REQUIRE(plan.workers.size() == 2);
  CHECK(plan.distributed_init_method.rfind("tcp://127.0.0.1:", 0) == 0);
  auto info = ex->collective_rpc("rank_info");
  REQUIRE_MESSAGE(info, describe(info.error()));
  REQUIRE(info->size() == 2);
  for (int r = 0; r < 2; ++r) {
    CHECK((*info)[r]["rank"] == r);
    CHECK((*info)[r]["rpc_rank"] == r);
    CHECK((*info)[r]["is_driver_worker"] == (r % 2 == 0));
    CHECK((*info)[r]["distributed_init_method"] == plan.distributed_init_method);
  }
  // update_environment_variables reached the worker processes.
  auto cvd = ex->collective_rpc("get_env", "CUDA_VISIBLE_DEVICES");
  REQUIRE(cvd);
  CHECK((*cvd)[0] == "0,1");
  CHECK((*cvd)[1] == "0,1");
  auto health = ex->check_health();
  REQUIRE(health);
  for (auto& h : *health)
    CHECK_MESSAGE(h.state == health_state::healthy, to_string(h.state));
  ex->shutdown();
  CHECK(test::wait_until([] { return test::children_of(getpid()).empty(); }, 5s));
}

TEST_CASE("collective_rpc: timeout names the rank, unknown method, unique reply, non_block") {
  test::become_subreaper();
  auto ex = start(options(2));
  SUBCASE("a method that outlives its timeout fails naming the rank") {
    auto t0 = std::chrono::steady_clock::now();
    auto r = ex->collective_rpc("sleep_ms", {{"ms", 3000}, {"rank", 1}}, 300ms);
    auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::timeout);
    CHECK(describe(r.error()).find("rank 1") != std::string::npos);
    CHECK(took < 2500ms);
  }
  SUBCASE("an unknown method is a clear error") {
    auto r = ex->collective_rpc("no_such_method");
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::unknown_method);
    CHECK(describe(r.error()).find("no_such_method") != std::string::npos);
  }
  SUBCASE("a method error reaches the caller with its text") {
    auto r = ex->collective_rpc("fail_on", 1);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::method_failed);
    CHECK(describe(r.error()).find("rank 1 was told to fail") != std::string::npos);
    auto t = ex->collective_rpc("throw");
    REQUIRE_FALSE(t);
    CHECK(describe(t.error()).find("thrown on purpose") != std::string::npos);
    // The workers survive their methods' failures.
    CHECK(ex->collective_rpc("noop"));
  }
  SUBCASE("unique_reply_rank returns one result") {
    auto r = ex->collective_rpc("rank_info", nullptr, 0ms, 1);
    REQUIRE(r);
    REQUIRE(r->size() == 1);
    CHECK((*r)[0]["rank"] == 1);
    auto bad = ex->collective_rpc("rank_info", nullptr, 0ms, 5);
    CHECK_FALSE(bad);
  }
  SUBCASE("non_block returns a future") {
    auto f = ex->collective_rpc_async("sleep_ms", {{"ms", 100}});
    CHECK(f.wait_for(0ms) == std::future_status::timeout);
    auto r = f.get();
    REQUIRE(r);
    CHECK((*r)[0] == 0);
    CHECK((*r)[1] == 1);
  }
  ex->shutdown();
  auto after = ex->collective_rpc("noop");
  CHECK(code_of(after.error()) == errc::not_ready);
}

TEST_CASE("tokens for tp=2 equal tp=1 for the same seed") {
  test::become_subreaper();
  std::vector<std::vector<int32_t>> one, two;
  {
    auto ex = start(options(1));
    one = run_tokens(*ex, 7, 4, 6);
  }
  {
    auto ex = start(options(2));
    two = run_tokens(*ex, 7, 4, 6);
  }
  CHECK(one == two);
  CHECK(test::wait_until([] { return test::children_of(getpid()).empty(); }, 5s));
}

TEST_CASE("start-up failures are clean and say what is wrong") {
  test::become_subreaper();
  SUBCASE("a model that cannot be sharded") {
    auto o = options(3); // 8 heads do not split over 3 ranks
    auto ex = executor::start(o);
    REQUIRE_FALSE(ex);
    CHECK(describe(ex.error()).find("3") != std::string::npos);
  }
  SUBCASE("a worker program that does not exist") {
    auto o = options(1);
    o.worker_program = "/nonexistent/cafex";
    auto ex = executor::start(o);
    REQUIRE_FALSE(ex);
    CHECK(code_of(ex.error()) == errc::spawn_failed);
  }
  CHECK(test::wait_until([] { return test::children_of(getpid()).empty(); }, 5s));
}
