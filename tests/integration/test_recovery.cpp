// The restart policy (--on-worker-failure restart) and reinitialize_distributed, with real
// worker processes: a lost worker is replaced on its bundle, communicators are rebuilt,
// the steps in flight fail (never lost, never run twice), the executor is ready again, and
// requests re-prefilled by the host give exactly the tokens of a run without failure.
// Every wait has a deadline; nothing sleeps as synchronisation.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <iterator>
#include <map>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "processes.hpp"

using namespace cafex;
using test::worker_pid;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

executor_options options(int tp, int pp = 1) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.parallel.pipeline_parallel_size = pp;
  o.worker_program = test::binary_from_env("CAFEX_TEST_WORKER");
  o.log_level = "off";
  o.model.name = "sleepy";
  o.model.seed = 5;
  o.on_worker_failure = failure_policy::restart;
  o.liveness.connection_timeout = 1000ms;
  return o;
}

long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void no_children_left() {
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    15s));
}

/// A host's view of its requests: what it asked for and what it got so far. Request "a"
/// sleeps `sleep_ms` on every stage (the sleepy model), so a step stays in flight.
struct host {
  std::map<std::string, std::vector<int32_t>> prompt, tokens;
  bool prefilled = false;
  uint64_t next_id = 0;

  explicit host(int sleep_ms) {
    prompt["sleep" + std::to_string(sleep_ms) + "-a"] = {5, 9, 2, 7, 1};
    prompt["b"] = {3, 3, 8};
  }

  /// The next step: the prompts (plus tokens so far, after a recovery), else decodes.
  scheduler_output step() {
    scheduler_output s;
    s.step_id = next_id++;
    for (auto& [id, p] : prompt) {
      auto& t = tokens[id];
      if (!prefilled) {
        auto all = p;
        all.insert(all.end(), t.begin(), t.end());
        s.new_requests.push_back({id, all});
      } else {
        s.cached_requests.push_back({id, t.back()});
      }
    }
    return s;
  }

  void record(const model_runner_output& out) {
    for (size_t i = 0; i < out.req_ids.size(); ++i)
      tokens[out.req_ids[i]].push_back(out.sampled[i]);
    prefilled = true;
  }

  /// After a recovery every KV cache is gone: re-prefill prompt + tokens so far.
  void lost_caches() { prefilled = false; }

  size_t done() const { return tokens.empty() ? 0 : tokens.begin()->second.size(); }
};

std::map<std::string, std::vector<int32_t>> baseline(int tp, int pp, int sleep_ms, size_t n) {
  auto o = options(tp, pp);
  o.on_worker_failure = failure_policy::fail;
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  host h(sleep_ms);
  while (h.done() < n) {
    auto r = (*ex)->execute_model(h.step());
    REQUIRE_MESSAGE(r, describe(r.error()));
    h.record(*r);
  }
  return h.tokens;
}

bool ready_within(executor& ex, std::chrono::milliseconds bound) {
  return test::wait_until([&] { return ex.state() == executor_state::ready; }, bound);
}

} // namespace

TEST_CASE(
  "restart: a SIGKILLed rank is replaced and re-prefilled requests give the same tokens") {
  test::become_subreaper();
  const size_t n = 6;
  const auto want = baseline(2, 1, 100, n);
  auto ex = executor::start(options(2));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  host h(100);
  for (int k = 0; k < 3; ++k) {
    auto r = (*ex)->execute_model(h.step());
    REQUIRE_MESSAGE(r, describe(r.error()));
    h.record(*r);
  }
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  auto pending = (*ex)->execute_model_async(h.step());
  REQUIRE(pending.wait_for(30ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(victim, SIGKILL) == 0);
  REQUIRE(pending.wait_for(2s) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  CHECK_MESSAGE(has(describe(r.error()), "rank 1"), describe(r.error()));
  CHECK_MESSAGE(has(describe(r.error()), "resubmit"), describe(r.error()));
  // While it recovers: degraded, and new steps are refused at once (not queued forever).
  REQUIRE(ready_within(**ex, 10s));
  auto recovered_ms = ms_since(t0);
  pid_t fresh = worker_pid(1);
  CHECK(fresh > 0);
  CHECK(fresh != victim);
  auto health = (*ex)->check_health();
  REQUIRE(health);
  for (const auto& w : *health)
    CHECK_MESSAGE(w.state == health_state::healthy,
                  w.rank << ": " << to_string(w.state) << " " << w.detail);
  // The host resubmits: every live request is re-prefilled with what it generated.
  h.lost_caches();
  while (h.done() < n) {
    auto s = (*ex)->execute_model(h.step());
    REQUIRE_MESSAGE(s, describe(s.error()));
    h.record(*s);
  }
  CHECK(h.tokens == want);
  MESSAGE("SIGKILL to ready again in " << recovered_ms << " ms");
  (*ex)->shutdown();
  no_children_left();
}

TEST_CASE("restart: a SIGSTOPped rank is killed, replaced, and the run goes on") {
  test::become_subreaper();
  auto o = options(1, 2);
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  host h(0);
  auto r0 = (*ex)->execute_model(h.step());
  REQUIRE_MESSAGE(r0, describe(r0.error()));
  h.record(*r0);
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  REQUIRE(kill(victim, SIGSTOP) == 0);
  REQUIRE(test::wait_stopped(victim, 5s));
  auto pending = (*ex)->execute_model_async(h.step());
  auto bound = o.liveness.connection_timeout + o.liveness.heartbeat_interval
               + o.liveness.cause_timeout + 1s;
  REQUIRE(pending.wait_for(bound) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK_MESSAGE(has(describe(r.error()), "unresponsive"), describe(r.error()));
  REQUIRE(ready_within(**ex, 15s));
  // The stopped process was killed, not left behind.
  CHECK(test::wait_until(
    [&] {
      test::reap_zombies();
      return kill(victim, 0) != 0;
    },
    5s));
  h.lost_caches();
  auto s = (*ex)->execute_model(h.step());
  REQUIRE_MESSAGE(s, describe(s.error()));
  (*ex)->shutdown();
  no_children_left();
}

TEST_CASE("restart: a broken TP communicator is rebuilt without replacing a worker") {
  test::become_subreaper();
  auto ex = executor::start(options(2));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  host h(0);
  auto r0 = (*ex)->execute_model(h.step());
  REQUIRE_MESSAGE(r0, describe(r0.error()));
  h.record(*r0);
  pid_t before = worker_pid(1);
  REQUIRE((*ex)->collective_rpc("break_tp", {{"rank", 1}}));
  auto r = (*ex)->execute_model(h.step());
  REQUIRE_FALSE(r);
  CHECK_MESSAGE(code_of(r.error()) == errc::transport_failed, describe(r.error()));
  REQUIRE(ready_within(**ex, 10s));
  CHECK(worker_pid(1) == before);
  h.lost_caches();
  for (int k = 0; k < 2; ++k) {
    auto s = (*ex)->execute_model(h.step());
    REQUIRE_MESSAGE(s, describe(s.error()));
    h.record(*s);
  }
  (*ex)->shutdown();
  no_children_left();
}

TEST_CASE("restart gives up after max_restarts: the executor is failed, not looping") {
  test::become_subreaper();
  auto o = options(2);
  o.max_restarts = 0;
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  pid_t victim = worker_pid(1);
  REQUIRE(victim > 0);
  REQUIRE(kill(victim, SIGKILL) == 0);
  CHECK(test::wait_until([&] { return (*ex)->state() == executor_state::failed; }, 10s));
  host h(0);
  auto r = (*ex)->execute_model(h.step());
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  (*ex)->shutdown();
  no_children_left();
}

TEST_CASE("reinitialize_distributed rebuilds communicators; shutting the current rank down "
          "stops the executor") {
  test::become_subreaper();
  auto o = options(2);
  o.on_worker_failure = failure_policy::fail;
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  host h(0);
  auto r0 = (*ex)->execute_model(h.step());
  REQUIRE_MESSAGE(r0, describe(r0.error()));
  h.record(*r0);
  auto err = (*ex)->reinitialize_distributed();
  REQUIRE_MESSAGE(!err, describe(err));
  CHECK((*ex)->state() == executor_state::ready);
  h.lost_caches();
  auto r1 = (*ex)->execute_model(h.step());
  REQUIRE_MESSAGE(r1, describe(r1.error()));
  err = (*ex)->reinitialize_distributed(true);
  REQUIRE_MESSAGE(!err, describe(err));
  CHECK((*ex)->state() == executor_state::stopped);
  auto r2 = (*ex)->execute_model(h.step());
  REQUIRE_FALSE(r2);
  CHECK(code_of(r2.error()) == errc::not_ready);
  no_children_left();
}
