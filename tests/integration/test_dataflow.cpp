// The compiled dataflow with real worker processes: PP x TP shapes, pipelining, order,
// deadlines, the KV aggregator, empty steps, teardown and re-compile.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <future>
#include <map>
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

struct run_result {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> hidden;
};

run_result run(int tp, int pp, int steps = 5, const std::string& channel = "auto") {
  auto o = options(tp, pp);
  o.channel = channel;
  o.model.seed = 3;
  o.model.return_hidden = true;
  auto ex = start(o);
  demo_workload work(3, 4, o.model.vocab_size);
  run_result out;
  for (int s = 0; s < steps; ++s) {
    auto r = ex->execute_model(work.next_step());
    REQUIRE_MESSAGE(r, describe(r.error()));
    work.observe(*r);
    out.tokens.push_back(r->sampled);
    out.hidden.push_back(r->hidden);
  }
  return out;
}

scheduler_output new_step(uint64_t id, const std::string& req, int prompt_len = 4) {
  scheduler_output s;
  s.step_id = id;
  std::vector<int32_t> prompt;
  for (int i = 0; i < prompt_len; ++i)
    prompt.push_back((static_cast<int32_t>(id) * 31 + i * 7) % 500);
  s.new_requests.push_back(new_request{req, prompt});
  return s;
}

} // namespace

TEST_CASE("tokens and hidden states are identical for every PP x TP shape") {
  test::become_subreaper();
  auto ref = run(1, 1);
  for (auto [tp, pp] : std::vector<std::pair<int, int>>{{2, 1}, {1, 2}, {2, 2}, {1, 3}}) {
    INFO("tp=" << tp << " pp=" << pp);
    auto got = run(tp, pp);
    CHECK(got.tokens == ref.tokens);
    REQUIRE(got.hidden.size() == ref.hidden.size());
    for (size_t s = 0; s < ref.hidden.size(); ++s) {
      REQUIRE(got.hidden[s].size() == ref.hidden[s].size());
      REQUIRE_FALSE(ref.hidden[s].empty());
      double diff = 0, norm = 0;
      for (size_t i = 0; i < ref.hidden[s].size(); ++i) {
        diff += std::pow(got.hidden[s][i] - ref.hidden[s][i], 2);
        norm += std::pow(ref.hidden[s][i], 2);
      }
      CHECK(std::sqrt(diff / norm) <= 1e-4);
    }
  }
  CHECK(test::wait_until([] { return test::children_of(getpid()).empty(); }, 5s));
}

TEST_CASE("the TCP, Gloo and shared-memory paths give the same tokens") {
  test::become_subreaper();
  auto shm = run(2, 2, 4, "shm");
  auto gloo = run(2, 2, 4, "gloo");
  auto tcp = run(2, 2, 4, "tcp");
  CHECK(shm.tokens == gloo.tokens);
  CHECK(shm.hidden == gloo.hidden);
  CHECK(shm.tokens == tcp.tokens);
  CHECK(shm.hidden == tcp.hidden);
  auto o = options(1, 2);
  auto ex = start(o);
  REQUIRE(ex->execute_model(new_step(0, "a")));
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK((*stats)["hot_path"] == "shm"); // auto picks shared memory on one machine
  o.channel = "gloo";
  auto ex2 = start(o);
  REQUIRE(ex2->execute_model(new_step(0, "a")));
  CHECK((*ex2->dataflow_stats())["hot_path"] == "gloo");
  o.channel = "tcp";
  auto ex3 = start(o);
  REQUIRE(ex3->execute_model(new_step(0, "a")));
  CHECK((*ex3->dataflow_stats())["hot_path"] == "tcp");
}

TEST_CASE("TP groups on one node use shared memory; Gloo, when asked, gives the same bits") {
  test::become_subreaper();
  auto o = options(2, 2);
  o.model.seed = 5;
  o.model.return_hidden = true;
  std::map<std::string, run_result> runs;
  for (const std::string transport : {"auto", "gloo", "shm", "tcp"}) {
    INFO("tp_transport " << transport);
    o.tp_transport = transport;
    auto ex = start(o);
    demo_workload work(3, 4, o.model.vocab_size);
    for (int s = 0; s < 4; ++s) {
      auto r = ex->execute_model(work.next_step());
      REQUIRE_MESSAGE(r, describe(r.error()));
      work.observe(*r);
      runs[transport].tokens.push_back(r->sampled);
      runs[transport].hidden.push_back(r->hidden);
    }
    auto stats = ex->dataflow_stats();
    REQUIRE(stats);
    const std::string want = transport == "auto" ? "shm" : transport;
    CHECK((*stats)["tp_transport"] == nlohmann::json::array({want, want}));
  }
  CHECK(runs["auto"].tokens == runs["gloo"].tokens);
  CHECK(runs["auto"].hidden == runs["gloo"].hidden);
  CHECK(runs["auto"].hidden == runs["shm"].hidden);
  CHECK(runs["auto"].tokens == runs["tcp"].tokens);
  CHECK(runs["auto"].hidden == runs["tcp"].hidden);
  o.tp_transport = "infiniband";
  auto bad = executor::start(o);
  REQUIRE_FALSE(bad);
  CHECK(describe(bad.error()).find("auto, shm, tcp or gloo") != std::string::npos);
}

TEST_CASE("pipelining: in flight never exceeds max_concurrent_batches and reaches it") {
  test::become_subreaper();
  auto o = options(1, 2);
  o.model.name = "sleepy";
  auto ex = start(o);
  CHECK(ex->max_concurrent_batches() == 2);
  std::vector<std::future<caf::expected<model_runner_output>>> futures;
  for (uint64_t i = 0; i < 6; ++i)
    futures.push_back(ex->execute_model_async(new_step(i, "sleep40-r" + std::to_string(i))));
  for (uint64_t i = 0; i < futures.size(); ++i) {
    auto r = futures[i].get();
    REQUIRE_MESSAGE(r, describe(r.error()));
    CHECK(r->step_id == i);
    CHECK(r->req_ids == std::vector<std::string>{"sleep40-r" + std::to_string(i)});
  }
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK((*stats)["max_observed"] == 2);
  CHECK((*stats)["max_in_flight"] == 2);
  CHECK((*stats)["steps_ok"] == 6);
}

TEST_CASE("results come back in step order even when a later step finishes first") {
  test::become_subreaper();
  auto o = options(1, 2);
  o.model.name = "sleepy";
  auto ex = start(o);
  // Step 0 sleeps on both stages; step 1 fails at once on stage 0 (unknown request).
  auto f0 = ex->execute_model_async(new_step(0, "sleep300-a"));
  scheduler_output bad;
  bad.step_id = 1;
  bad.cached_requests.push_back(cached_request{"never-seen", 1});
  auto f1 = ex->execute_model_async(bad);
  auto r1 = f1.get();
  // When step 1's answer is out, step 0's must already be there.
  CHECK(f0.wait_for(0ms) == std::future_status::ready);
  REQUIRE_FALSE(r1);
  CHECK(describe(r1.error()).find("never-seen") != std::string::npos);
  auto r0 = f0.get();
  REQUIRE_MESSAGE(r0, describe(r0.error()));
  CHECK(r0->step_id == 0);
}

TEST_CASE("past the limit a step waits, or fails fast when asked") {
  test::become_subreaper();
  auto o = options(1, 1);
  o.model.name = "sleepy";
  auto ex = start(o);
  CHECK(ex->max_concurrent_batches() == 1);
  auto f0 = ex->execute_model_async(new_step(0, "sleep500-a"));
  auto fast = ex->execute_model_async(new_step(1, "b"), when_full::fail).get();
  REQUIRE_FALSE(fast);
  CHECK(code_of(fast.error()) == errc::too_many_in_flight);
  auto waits = ex->execute_model_async(new_step(2, "c"));
  CHECK(f0.get());
  auto r = waits.get();
  REQUIRE(r);
  CHECK(r->step_id == 2);
}

TEST_CASE("a step that misses its deadline names the stage and the ranks owing output") {
  test::become_subreaper();
  auto o = options(1, 2);
  o.model.name = "sleepy";
  o.step_timeout = 300ms;
  auto ex = start(o);
  auto t0 = std::chrono::steady_clock::now();
  auto r = ex->execute_model(new_step(0, "sleep2000-a"));
  CHECK(std::chrono::steady_clock::now() - t0 < 1500ms);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
  CHECK(describe(r.error()).find("stage 0 rank(s) [0]") != std::string::npos);
}

TEST_CASE("empty steps pass through every stage") {
  test::become_subreaper();
  auto ex = start(options(1, 3));
  scheduler_output empty;
  empty.step_id = 9;
  auto r = ex->execute_model(empty);
  REQUIRE_MESSAGE(r, describe(r.error()));
  CHECK(r->step_id == 9);
  CHECK(r->sampled.empty());
  CHECK(ex->execute_model(new_step(10, "x")));
}

TEST_CASE("the KV aggregator reports a request only once every rank finished it") {
  test::become_subreaper();
  auto o = options(2, 1);
  o.kv_connector = "loopback"; // odd ranks report one step later
  auto ex = start(o);
  REQUIRE(ex->execute_model(new_step(0, "a")));
  scheduler_output fin;
  fin.step_id = 1;
  fin.finished.push_back("a");
  auto r1 = ex->execute_model(fin);
  REQUIRE_MESSAGE(r1, describe(r1.error()));
  CHECK(r1->finished_sending.empty()); // rank 1 has not reported "a" yet
  scheduler_output next;
  next.step_id = 2;
  auto r2 = ex->execute_model(next);
  REQUIRE(r2);
  CHECK(r2->finished_sending == std::vector<std::string>{"a"});
}

TEST_CASE("teardown fails nothing silently and the next step compiles again") {
  test::become_subreaper();
  auto ex = start(options(1, 2));
  REQUIRE(ex->execute_model(new_step(0, "a")));
  auto before = ex->dataflow_stats();
  REQUIRE(before);
  CHECK((*before)["compiled"] == true);
  REQUIRE_FALSE(ex->teardown_dataflow());
  auto mid = ex->dataflow_stats();
  CHECK((*mid)["compiled"] == false);
  auto r = ex->execute_model(new_step(1, "b"));
  REQUIRE_MESSAGE(r, describe(r.error()));
  auto after = ex->dataflow_stats();
  CHECK((*after)["generation"].get<int>() > (*before)["generation"].get<int>());
  ex->shutdown();
  auto late = ex->execute_model(new_step(2, "c"));
  REQUIRE_FALSE(late);
  CHECK(code_of(late.error()) == errc::not_ready);
}

TEST_CASE("teardown with steps and TP collectives in flight, then a recompile") {
  test::become_subreaper();
  auto o = options(2, 2);
  o.model.num_layers = 64; // steps long enough to be inside their all-reduces
  o.model.seed = 11;
  auto ex = start(o);
  REQUIRE(ex->execute_model(new_step(0, "warm")));
  int completed = 0;
  int failed = 0;
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    std::vector<std::future<caf::expected<model_runner_output>>> pending;
    for (int k = 0; k < 2; ++k)
      pending.push_back(
        ex->execute_model_async(new_step(static_cast<uint64_t>(100 + round * 2 + k),
                                         "r" + std::to_string(round * 2 + k))));
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_FALSE(ex->teardown_dataflow());
    // Every pending step ends, one way or the other, well before any TP timeout (60 s).
    for (auto& f : pending) {
      REQUIRE(f.wait_for(10s) == std::future_status::ready);
      auto got = f.get();
      if (got)
        ++completed;
      else
        ++failed;
    }
    auto r = ex->execute_model(
      new_step(static_cast<uint64_t>(200 + round), "after" + std::to_string(round)));
    REQUIRE_MESSAGE(r, describe(r.error()));
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(took < 10s);
  }
  MESSAGE("steps in flight at teardown: " << completed << " completed, " << failed
                                          << " failed");
}

TEST_CASE("an unknown channel type is refused with the valid values") {
  auto o = options(1, 2);
  o.channel = "carrier-pigeon";
  auto ex = executor::start(o);
  REQUIRE_FALSE(ex);
  CHECK(describe(ex.error()).find("auto, nccl, tcp, gloo and shm") != std::string::npos);
}
