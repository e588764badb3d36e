// The public API as a host uses it: concurrent calls from many threads, the Asio
// completion-handler form, and callbacks that are never lost across shutdown.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include "cafex/asio.hpp"
#include "cafex/executor.hpp"
#include "cafex/worker.hpp"
#include "processes.hpp"
#include "runtime/models/reference_model.hpp"
#include "runtime/models/workload.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<executor> start(int tp) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.worker_program = test::binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "warn";
  auto ex = executor::start(std::move(o));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  return std::move(*ex);
}

/// Greedy tokens of the reference model for `prompt`, in this process (tp = 1).
std::vector<int32_t> reference_tokens(const std::vector<int32_t>& prompt, int n) {
  reference_model m;
  solo_collective solo;
  REQUIRE_FALSE(m.load(model_config{}, shard_info{}, solo));
  std::vector<int32_t> out;
  scheduler_output s;
  s.new_requests.push_back({"r", prompt});
  for (int i = 0; i < n; ++i) {
    auto r = m.execute(s, nullptr);
    REQUIRE(r);
    out.push_back(r->output.sampled.at(0));
    s = {};
    s.cached_requests.push_back({"r", out.back()});
  }
  return out;
}

} // namespace

TEST_CASE("8 threads submit steps and rpcs at once; every answer is right") {
  test::become_subreaper();
  auto ex = start(2);
  constexpr int threads = 8;
  constexpr int tokens = 6;
  std::vector<std::vector<int32_t>> got(threads), want(threads);
  for (int t = 0; t < threads; ++t)
    want[t] = reference_tokens(demo_workload::prompt(7, t, 512), tokens);
  std::atomic<int> rpc_ok{0}, failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto id = "thread-" + std::to_string(t);
      scheduler_output s;
      s.new_requests.push_back({id, demo_workload::prompt(7, t, 512)});
      for (int i = 0; i < tokens; ++i) {
        // Alternate the three step forms; interleave an rpc and a health check.
        caf::expected<model_runner_output> r{caf::error{}};
        if (i % 3 == 0) {
          r = ex->execute_model(s);
        } else if (i % 3 == 1) {
          r = ex->execute_model_async(s).get();
        } else {
          std::promise<caf::expected<model_runner_output>> p;
          ex->submit(s, cafex::when_full::wait, [&p](caf::expected<model_runner_output> x) {
            p.set_value(std::move(x));
          });
          r = p.get_future().get();
        }
        if (!r || r->sampled.size() != 1) {
          ++failures;
          return;
        }
        got[t].push_back(r->sampled[0]);
        s = {};
        s.cached_requests.push_back({id, r->sampled[0]});
        auto rpc = (t % 2 == 0) ? ex->collective_rpc("rank_info")
                                : ex->collective_rpc_async("rank_info").get();
        if (rpc && rpc->size() == 2)
          ++rpc_ok;
        else
          ++failures;
        if (!ex->check_health())
          ++failures;
      }
    });
  }
  for (auto& th : pool)
    th.join();
  CHECK(failures == 0);
  CHECK(rpc_ok == threads * tokens);
  for (int t = 0; t < threads; ++t)
    CHECK_MESSAGE(got[t] == want[t], "thread " << t);
  ex->shutdown();
  CHECK(test::wait_until([] { return test::children_of(getpid()).empty(); }, 10s));
}

TEST_CASE("async_execute_model runs its handler on the io_context's thread") {
  test::become_subreaper();
  auto ex = start(1);
  boost::asio::io_context ioc;
  auto strand = boost::asio::make_strand(ioc);
  std::thread::id handler_thread;
  int calls = 0;
  scheduler_output s;
  s.new_requests.push_back({"a", {1, 2, 3}});
  async_execute_model(*ex, s, strand, [&](caf::expected<model_runner_output> r) {
    REQUIRE(r);
    handler_thread = std::this_thread::get_id();
    ++calls;
    scheduler_output next;
    next.cached_requests.push_back({"a", r->sampled.at(0)});
    async_execute_model(*ex, next, ioc, [&](caf::expected<model_runner_output> r2) {
      CHECK(r2);
      ++calls;
    });
  });
  ioc.run_for(30s); // returns as soon as both handlers ran: the work guard ends then
  CHECK(calls == 2);
  CHECK(handler_thread == std::this_thread::get_id());
  ex->shutdown();
  // After shutdown the handler still runs, with an error.
  caf::error err;
  async_execute_model(*ex, s, ioc, [&](caf::expected<model_runner_output> r) {
    REQUIRE_FALSE(r);
    err = r.error();
  });
  ioc.restart();
  ioc.run_for(10s);
  CHECK(code_of(err) == errc::not_ready);
}

TEST_CASE("submit racing shutdown: every callback runs exactly once") {
  test::become_subreaper();
  auto ex = start(1);
  std::atomic<int> called{0};
  constexpr int n = 200;
  std::thread submitter([&] {
    for (int i = 0; i < n; ++i) {
      scheduler_output s;
      s.step_id = i; // empty steps: cheap, still a full round trip
      ex->submit(s, cafex::when_full::wait,
                 [&](caf::expected<model_runner_output>) { ++called; });
    }
  });
  ex->shutdown();
  submitter.join();
  CHECK(test::wait_until([&] { return called.load() == n; }, 20s));
}

TEST_CASE("cafex/worker.hpp: a host's own method table and the built-ins") {
  auto t = method_table::builtins();
  t.add("ping", [](worker_state& st, const json&) -> caf::expected<json> { return st.rank; });
  CHECK(t.find("ping") != nullptr);
  CHECK(t.find("load_model") != nullptr);
  worker_state st;
  st.rank = 3;
  auto r = invoke_method(t, st, "ping", "null");
  REQUIRE(r);
  CHECK(*r == "3");
}
