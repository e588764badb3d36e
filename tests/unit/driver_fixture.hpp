// The driver state-machine tests' fixture (test_driver_state_machine.cpp,
// test_driver_rebuild.cpp): the driver actor under CAF 0.17's test_coordinator (the
// deterministic scheduler with virtual time that caf/test/dsl.hpp's
// test_coordinator_fixture is built on), with fake workers and a fake node agent as plain
// actors that answer, hold or die on command. No processes, no sockets, no sleeps.
//
// Why not dsl.hpp's fixture and expect() themselves: their checks report to CAF's own test
// engine (caf::test::engine::current_test()), which doctest does not run, so a failing
// expectation would dereference a null test instead of failing. The fixture below is the
// same few lines (testing scheduler and middleman, run(), virtual time) with doctest
// checks.
#pragma once

#include <doctest/doctest.h>

#include <csignal>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "actors/driver_actor.hpp"
#include "actors/system_config.hpp"
#include "runtime/error.hpp"

namespace cafex::driver_test {

using namespace cafex;

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// cafex's message types and error rendering on the deterministic scheduler.
struct test_config : system_config {
  test_config() {
    set("scheduler.policy", caf::atom("testing"));
    set("middleman.network-backend", caf::atom("testing"));
    set("middleman.manual-multiplexing", true);
    set("middleman.heartbeat-interval", caf::timespan{0});
  }
};

/// What one fake worker was asked, and how it behaves.
struct fake_script {
  bool answer_steps = false; ///< report every step it runs to the sink (else: hold it)
  int calls = 0;
  int compiles = 0;
  int executes = 0;
  int teardowns = 0;
  int recovery_teardowns = 0; ///< of which for a recovery (the TP communicator closed too)
};

/// A worker: answers every method with "ok", compiles, runs steps (reporting them when
/// its script says so), tears down. Dies when the test sends it an exit.
caf::behavior fake_worker(caf::event_based_actor* self, int32_t rank,
                          std::shared_ptr<fake_script> script) {
  auto sink = std::make_shared<caf::strong_actor_ptr>();
  return {
    [=](call_atom, const std::string& method, const std::string&) -> std::string {
      ++script->calls;
      return "\"ok:" + method + "\"";
    },
    [=](dag_atom, const dag_config& cfg) -> std::string {
      *sink = cfg.sink;
      ++script->compiles;
      return "fake";
    },
    [=](execute_atom, uint64_t seq, const scheduler_output& step) {
      ++script->executes;
      if (!script->answer_steps || !*sink)
        return;
      model_runner_output out;
      out.step_id = step.step_id;
      self->send(caf::actor_cast<caf::actor>(*sink), result_atom::value, seq, rank, out);
    },
    [=](teardown_atom) -> bool {
      ++script->teardowns;
      return true;
    },
    [=](teardown_atom, recover_atom) -> bool {
      ++script->teardowns;
      ++script->recovery_teardowns;
      return true;
    },
  };
}

/// What the fake node agent answers when asked how a worker ended.
struct agent_script {
  failure_cause answer = process_ended(true, SIGKILL);
  bool silent = false; ///< never answer: the driver's cause_timeout decides
  int asked = 0;
  std::vector<caf::typed_response_promise<failure_cause>> held;
};

caf::behavior fake_agent(caf::event_based_actor* self, std::shared_ptr<agent_script> script) {
  return {
    [=](cause_atom, int32_t, const std::string&) -> caf::result<failure_cause> {
      ++script->asked;
      if (script->silent) {
        auto rp = self->make_response_promise<failure_cause>();
        script->held.push_back(rp);
        return rp;
      }
      return script->answer;
    },
    [=](kill_atom, const std::string&) -> failure_cause {
      return process_ended(true, SIGKILL);
    },
  };
}

/// A driver with `n` fake workers (tp = n, pp = 1) on nodes "n0".."n{n-1}", one agent;
/// `started`: start-up ran to its end (the dataflow configured), else it is still loading.
struct fixture {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scheduler::test_coordinator& sched{
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())};
  caf::scoped_actor self{sys, true};
  std::shared_ptr<agent_script> agent_does = std::make_shared<agent_script>();
  caf::actor agent;
  std::vector<caf::actor> fakes;
  std::vector<std::shared_ptr<fake_script>> scripts;
  std::vector<std::pair<int32_t, std::string>> recoveries; ///< on_recover calls
  driver_actor driver;

  explicit fixture(int n, bool restart, bool started = true) {
    driver_options o;
    if (restart)
      o.on_recover = [this](int32_t rank, std::string why) {
        recoveries.emplace_back(rank, std::move(why));
      };
    driver = sys.spawn(driver_impl, o);
    agent = sys.spawn(fake_agent, agent_does);
    std::vector<worker_actor> ws;
    std::vector<std::string> nodes;
    for (int r = 0; r < n; ++r) {
      ws.push_back(spawn_fake(r));
      nodes.push_back("n" + std::to_string(r));
    }
    REQUIRE(ask<bool>(workers_atom::value, ws, nodes, int32_t{n}, int32_t{1}));
    std::vector<node_agent_actor> agents(n, caf::actor_cast<node_agent_actor>(agent));
    REQUIRE(ask<bool>(agents_atom::value, agents));
    if (started)
      REQUIRE(ask<bool>(dag_atom::value, std::string("tcp://127.0.0.1:1"),
                        std::vector<std::string>(n, "127.0.0.1"), false));
  }

  ~fixture() {
    for (auto& f : fakes)
      caf::anon_send_exit(f, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(driver, caf::exit_reason::user_shutdown);
    sched.run();
  }

  worker_actor spawn_fake(int r) {
    scripts.push_back(std::make_shared<fake_script>());
    fakes.push_back(sys.spawn(fake_worker, int32_t{r}, scripts.back()));
    sched.run();
    return caf::actor_cast<worker_actor>(fakes.back());
  }

  /// Sends a request and runs every actor until nothing is left to do; the answer must be
  /// there by then (a missing one fails, it never blocks).
  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    auto handle = self->request(driver, caf::infinite, std::forward<Ts>(xs)...);
    sched.run();
    REQUIRE_MESSAGE(!self->mailbox().empty(), "the driver did not answer");
    caf::expected<T> out{caf::error{}};
    handle.receive([&](T& x) { out = std::move(x); },
                   [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  /// A step from its own client, so that it can stay pending while the test goes on.
  struct pending_step {
    std::unique_ptr<caf::scoped_actor> client;
    std::function<caf::expected<model_runner_output>()> take;
    bool answered() const { return !(*client)->mailbox().empty(); }
    caf::expected<model_runner_output> result() {
      REQUIRE_MESSAGE(answered(), "the step is not answered");
      return take();
    }
  };

  pending_step submit(uint64_t step_id) {
    pending_step p;
    p.client = std::make_unique<caf::scoped_actor>(sys, true);
    scheduler_output step;
    step.step_id = step_id;
    auto handle = (*p.client)->request(driver, caf::infinite, execute_atom::value, step,
                                       false);
    p.take = [handle]() mutable {
      caf::expected<model_runner_output> out{caf::error{}};
      handle.receive([&](model_runner_output& x) { out = std::move(x); },
                     [&](caf::error& e) { out = std::move(e); });
      return out;
    };
    sched.run();
    return p;
  }

  std::vector<worker_health> health() {
    auto h = ask<std::vector<worker_health>>(health_atom::value);
    REQUIRE(h);
    return *h;
  }

  /// Kills the worker at `rank` (its process "ended") and lets the driver react.
  void lose(size_t fake) {
    caf::anon_send_exit(fakes[fake], caf::exit_reason::kill);
    sched.run();
  }

  /// Installs a fresh fake at `rank`, as the host's recovery does.
  caf::expected<bool> replace(int32_t rank) {
    auto w = spawn_fake(rank);
    return ask<bool>(replace_atom::value, rank, w, "n" + std::to_string(rank) + "b",
                     std::string("127.0.0.1"), caf::actor_cast<node_agent_actor>(agent));
  }
};

} // namespace cafex::driver_test
