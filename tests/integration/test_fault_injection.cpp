// The stock worker's fault injection (chaos/worker_faults): off without
// CAFEX_FAULT_INJECTION=1 (the fault.* methods are unknown), and each method does what
// `cafex chaos` relies on when it is on; the start-up hook its start-up faults use, and
// start-up errors that name their phase. Every wait has a deadline.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "cafex/executor.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

executor_options stock(int tp, const std::string& model) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.worker_program = test::binary_from_env("CAFEX_BIN"); // the stock `cafex worker`
  o.log_level = "off";
  o.model.name = model;
  o.step_timeout = 20s;
  return o;
}

scheduler_output step_of(uint64_t id) {
  scheduler_output s;
  s.step_id = id;
  s.new_requests.push_back(new_request{"r" + std::to_string(id), {1, 2, 3, 4}});
  return s;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Sets or clears the variable for the embedded node agent (and so its workers).
struct fault_env {
  explicit fault_env(bool on) {
    if (on)
      setenv("CAFEX_FAULT_INJECTION", "1", 1);
    else
      unsetenv("CAFEX_FAULT_INJECTION");
  }
  ~fault_env() { unsetenv("CAFEX_FAULT_INJECTION"); }
};

} // namespace

TEST_CASE("without CAFEX_FAULT_INJECTION the fault methods and test models do not exist") {
  test::become_subreaper();
  fault_env env{false};
  auto ex = executor::start(stock(1, "reference"));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  for (auto m : {"fault.fail", "fault.throw", "fault.delay", "fault.break_collective"}) {
    auto r = (*ex)->collective_rpc(m, {{"rank", 0}});
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::unknown_method);
  }
  (*ex)->shutdown();
  auto sleepy = executor::start(stock(1, "sleepy"));
  REQUIRE_FALSE(sleepy);
  CHECK_MESSAGE(has(describe(sleepy.error()), "unknown model 'sleepy'"),
                describe(sleepy.error()));
}

TEST_CASE("with CAFEX_FAULT_INJECTION=1 each fault hits only its rank") {
  test::become_subreaper();
  fault_env env{true};
  auto ex = executor::start(stock(2, "sleepy"));
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  REQUIRE((*ex)->execute_model(step_of(0)));

  auto f = (*ex)->collective_rpc("fault.fail", {{"rank", 1}});
  REQUIRE_FALSE(f);
  CHECK(code_of(f.error()) == errc::method_failed);
  CHECK_MESSAGE(has(describe(f.error()), "rank 1"), describe(f.error()));
  auto t = (*ex)->collective_rpc("fault.throw", {{"rank", 0}});
  REQUIRE_FALSE(t);
  CHECK(code_of(t.error()) == errc::method_failed);
  CHECK(has(describe(t.error()), "thrown on purpose"));
  // The thrower survived.
  auto ok = (*ex)->collective_rpc("fault.fail", {{"rank", 7}});
  REQUIRE_MESSAGE(ok, describe(ok.error()));
  CHECK(ok->size() == 2);
  auto bad = (*ex)->collective_rpc("fault.delay", {{"ms", 5}});
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);

  // Delay: the next step of rank 1 waits 400 ms; the one after does not.
  REQUIRE((*ex)->collective_rpc("fault.delay", {{"rank", 1}, {"ms", 400}, {"steps", 1}}));
  auto t0 = steady::now();
  REQUIRE((*ex)->execute_model(step_of(1)));
  auto slow = steady::now() - t0;
  CHECK(slow >= 400ms);
  t0 = steady::now();
  REQUIRE((*ex)->execute_model(step_of(2)));
  CHECK(steady::now() - t0 < 400ms);

  // A broken communicator fails the next step fast, as a transport failure.
  REQUIRE((*ex)->collective_rpc("fault.break_collective", {{"rank", 1}}));
  t0 = steady::now();
  auto r = (*ex)->execute_model(step_of(3));
  REQUIRE_FALSE(r);
  CHECK(steady::now() - t0 < 5s);
  CHECK_MESSAGE(code_of(r.error()) == errc::transport_failed, describe(r.error()));
  (*ex)->shutdown();
}

TEST_CASE("on_startup_phase hears every phase in order, with the workers' pids once ranked") {
  test::become_subreaper();
  fault_env env{true};
  auto o = stock(2, "sleepy");
  std::vector<startup_event> seen;
  o.on_startup_phase = [&seen](const startup_event& ev) { seen.push_back(ev); };
  auto ex = executor::start(o);
  REQUIRE_MESSAGE(ex, describe(ex.error()));
  std::vector<std::string> names;
  for (const auto& ev : seen)
    names.push_back(to_string(ev.phase));
  CHECK(names
        == std::vector<std::string>{"placement", "spawn_workers", "rank_workers",
                                    "update_environment", "init_worker", "init_device",
                                    "load_model", "compile_dataflow"});
  // No pids before the workers are ranked; then the same pids as process_info, by rank.
  REQUIRE(seen.size() == 8);
  for (size_t i = 0; i < 3; ++i)
    CHECK(seen[i].worker_pids.empty());
  auto info = (*ex)->collective_rpc("process_info");
  REQUIRE_MESSAGE(info, describe(info.error()));
  std::vector<int64_t> pids;
  for (const auto& w : *info)
    pids.push_back(w.at("pid").get<int64_t>());
  for (size_t i = 3; i < seen.size(); ++i)
    CHECK_MESSAGE(seen[i].worker_pids == pids, to_string(seen[i].phase));
  (*ex)->shutdown();
}

TEST_CASE("a start-up error says that start-up failed and names the phase") {
  test::become_subreaper();
  fault_env env{true};
  auto ex = executor::start(stock(2, "failing_load"));
  REQUIRE_FALSE(ex);
  CHECK(code_of(ex.error()) == errc::model_failed);
  auto what = describe(ex.error());
  CHECK_MESSAGE(has(what, "start-up failed in load_model: "), what);
  CHECK_MESSAGE(has(what, "rank 1 was told to fail load_model"), what);
  // Before any phase (argument checks): start-up failed, no phase.
  auto bad = stock(0, "sleepy");
  auto r = executor::start(bad);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  CHECK_MESSAGE(has(describe(r.error()), "start-up failed: tensor and pipeline"),
                describe(r.error()));
}
