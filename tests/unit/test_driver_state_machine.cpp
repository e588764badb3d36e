// The driver actor's state machine, deterministically: every message runs on this thread,
// in order, under CAF 0.17's test_coordinator (the deterministic scheduler with virtual
// time that caf/test/dsl.hpp's test_coordinator_fixture is built on). Fake workers and a
// fake node agent are plain actors that answer, hold or die on command. No processes, no
// sockets, no sleeps.
//
// Why not dsl.hpp's fixture and expect() themselves: their checks report to CAF's own test
// engine (caf::test::engine::current_test()), which doctest does not run, so a failing
// expectation would dereference a null test instead of failing. The fixture below is the
// same few lines (testing scheduler and middleman, run(), virtual time) with doctest
// checks.
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

using namespace cafex;

namespace {

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

} // namespace

TEST_CASE("a rank lost during a step fails the step at once with its cause; it stays dead") {
  fixture f{2, false};
  // With tp=2 the output comes from rank 0; it holds the step, so the step is in flight
  // (sent to both ranks) when rank 1 goes.
  auto held = f.submit(8);
  CHECK(f.scripts[0]->executes == 1);
  CHECK(f.scripts[1]->executes == 1);
  REQUIRE_FALSE(held.answered());
  f.lose(1);
  auto r = held.result();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  CHECK_MESSAGE(has(describe(r.error()), "rank 1 on node n1"), describe(r.error()));
  CHECK_MESSAGE(has(describe(r.error()), "killed by signal 9"), describe(r.error()));
  CHECK(f.agent_does->asked == 1);
  auto h = f.health();
  REQUIRE(h.size() == 2);
  CHECK(h[0].state == health_state::healthy);
  CHECK(h[0].cause.what == failure_cause::kind::none);
  CHECK(h[1].state == health_state::dead);
  CHECK(h[1].cause.what == failure_cause::kind::killed);
  CHECK(h[1].cause.code == SIGKILL);
  CHECK_FALSE(node_suspect(h[1].cause));
  CHECK(f.recoveries.empty()); // the fail policy: nobody is asked to recover
  // Later calls and steps fail fast instead of waiting for their timeout.
  auto call = f.ask<std::vector<std::string>>(rpc_atom::value, std::string("noop"),
                                              std::string("null"), rpc_options{});
  REQUIRE_FALSE(call);
  CHECK(code_of(call.error()) == errc::worker_lost);
  auto again = f.submit(9);
  auto r2 = again.result();
  REQUIRE_FALSE(r2);
  CHECK(code_of(r2.error()) == errc::worker_lost);
}

TEST_CASE("a step that completes before any loss is answered") {
  fixture f{2, false};
  f.scripts[0]->answer_steps = true;
  auto step = f.submit(3);
  REQUIRE(step.answered());
  auto r = step.result();
  REQUIRE(r);
  CHECK(r->step_id == 3);
  CHECK(f.scripts[0]->executes == 1);
  CHECK(f.scripts[1]->executes == 1);
}

TEST_CASE("a step submitted while the communicators are rebuilt after a teardown waits") {
  fixture f{2, false};
  auto held = f.submit(1); // in flight: the ranks may stand at different collectives
  REQUIRE_FALSE(held.answered());
  auto closed = f.ask<bool>(teardown_atom::value);
  REQUIRE(closed);
  CHECK(*closed); // the executor must rebuild the communicators
  CHECK(f.scripts[0]->recovery_teardowns == 1);
  CHECK(f.scripts[1]->recovery_teardowns == 1);
  auto torn = held.result();
  REQUIRE_FALSE(torn);
  CHECK(code_of(torn.error()) == errc::not_ready);
  // A step that arrives before the rebuild is done neither compiles nor runs: its ranks
  // would meet on different communicator generations.
  f.scripts[0]->answer_steps = true;
  auto waiting = f.submit(2);
  CHECK_FALSE(waiting.answered());
  CHECK(f.scripts[0]->compiles == 1);
  CHECK(f.scripts[0]->executes == 1);
  auto stats = f.ask<std::string>(stats_atom::value);
  REQUIRE(stats);
  CHECK_MESSAGE(has(*stats, "\"rebuilding\":true"), *stats);
  auto told = f.ask<bool>(rebuilt_atom::value, std::string{});
  REQUIRE(told);
  CHECK(*told);
  REQUIRE(waiting.answered());
  auto r = waiting.result();
  REQUIRE_MESSAGE(r, describe(r.error()));
  CHECK(r->step_id == 2);
  CHECK(f.scripts[0]->compiles == 2);
  CHECK(f.scripts[1]->executes == 2);
  // Nothing is awaited any more: a second report changes nothing.
  auto again = f.ask<bool>(rebuilt_atom::value, std::string{});
  REQUIRE(again);
  CHECK_FALSE(*again);
}

TEST_CASE("a teardown with nothing in flight leaves the communicators; one for a rebuild "
          "closes them") {
  fixture f{2, false};
  f.scripts[0]->answer_steps = true;
  REQUIRE(f.submit(1).result());
  auto plain = f.ask<bool>(teardown_atom::value);
  REQUIRE(plain);
  CHECK_FALSE(*plain);
  CHECK(f.scripts[1]->teardowns == 1);
  CHECK(f.scripts[1]->recovery_teardowns == 0);
  REQUIRE(f.submit(2).result()); // compiles again at once: no rebuild is awaited
  auto rebuild = f.ask<bool>(teardown_atom::value, recover_atom::value);
  REQUIRE(rebuild);
  CHECK(*rebuild);
  CHECK(f.scripts[1]->recovery_teardowns == 1);
  auto waiting = f.submit(3);
  CHECK_FALSE(waiting.answered());
  REQUIRE(f.ask<bool>(rebuilt_atom::value, std::string{}));
  REQUIRE(waiting.result());
}

TEST_CASE("a rebuild that failed, or never reported, fails the steps that waited for it") {
  fixture f{2, false};
  SUBCASE("failed") {
    REQUIRE(f.ask<bool>(teardown_atom::value, recover_atom::value));
    auto waiting = f.submit(1);
    CHECK_FALSE(waiting.answered());
    REQUIRE(f.ask<bool>(rebuilt_atom::value, std::string("rank 1 did not join")));
    auto r = waiting.result();
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::transport_failed);
    CHECK_MESSAGE(has(describe(r.error()), "could not be rebuilt after a teardown: rank 1 "
                                           "did not join"),
                  describe(r.error()));
    CHECK(f.scripts[0]->executes == 0);
  }
  SUBCASE("never reported") {
    REQUIRE(f.ask<bool>(teardown_atom::value, recover_atom::value));
    auto waiting = f.submit(1);
    CHECK_FALSE(waiting.answered());
    f.sched.trigger_timeouts(); // virtual time: the rebuild's deadline passes
    f.sched.run();
    auto r = waiting.result();
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(has(describe(r.error()), "did not report the rebuild within"),
                  describe(r.error()));
    // The driver is usable again: the next step compiles and runs.
    f.scripts[0]->answer_steps = true;
    REQUIRE(f.submit(2).result());
  }
}

TEST_CASE("a lost link reads unresponsive until its agent answers, then unreachable") {
  fixture f{2, false};
  f.agent_does->silent = true;
  f.lose(1);
  auto h = f.health();
  CHECK(h[1].state == health_state::unresponsive);
  CHECK(h[1].cause.what == failure_cause::kind::link_dropped);
  CHECK(h[1].detail == "link dropped"); // user-visible text, as before
  // The agent never answers: the driver's cause_timeout (virtual time) decides.
  f.sched.advance_time(liveness_options{}.cause_timeout + std::chrono::milliseconds(1));
  f.sched.run();
  h = f.health();
  CHECK(h[1].state == health_state::unresponsive);
  CHECK(h[1].cause.what == failure_cause::kind::unreachable);
  CHECK(node_suspect(h[1].cause));
}

TEST_CASE("an agent that knows nothing leaves the rank dead, its node not suspect") {
  fixture f{2, false};
  f.agent_does->answer = failure_cause{}; // unknown: the agent has no record of it
  f.lose(1);
  auto h = f.health();
  CHECK(h[1].state == health_state::dead);
  CHECK(h[1].cause.what == failure_cause::kind::unknown);
  // The link ended by an exit, not remote_link_unreachable: the node is not suspect.
  CHECK_FALSE(h[1].cause.link_unreachable);
  CHECK_FALSE(node_suspect(h[1].cause));
  CHECK_MESSAGE(has(h[1].detail, "connection lost"), h[1].detail);
}

TEST_CASE("restart policy: a rank lost during a recovery joins it; both come back") {
  fixture f{2, true};
  auto held = f.submit(1);
  f.lose(1);
  auto r = held.result();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
  REQUIRE(f.recoveries.size() == 1);
  CHECK(f.recoveries[0].first == 1);
  CHECK(f.scripts[0]->teardowns == 1);          // the survivor drops its channels
  CHECK(f.scripts[0]->recovery_teardowns == 1); // and closes its TP communicator
  auto h = f.health();
  CHECK(h[0].state == health_state::rebuilding);
  CHECK(h[1].state == health_state::restarting);
  CHECK(h[1].cause.what == failure_cause::kind::killed);
  // While recovering, only the recovery's own calls go out.
  auto refused = f.ask<std::vector<std::string>>(rpc_atom::value, std::string("noop"),
                                                 std::string("null"), rpc_options{});
  REQUIRE_FALSE(refused);
  CHECK(code_of(refused.error()) == errc::not_ready);
  // Rank 0 goes too, before the host replaced rank 1.
  f.agent_does->answer = process_ended(false, 3);
  f.lose(0);
  REQUIRE(f.recoveries.size() == 2);
  CHECK(f.recoveries[1].first == 0);
  h = f.health();
  CHECK(h[0].state == health_state::restarting);
  CHECK(h[0].cause.what == failure_cause::kind::exited);
  CHECK(h[0].cause.code == 3);
  CHECK(h[1].state == health_state::restarting);
  // The recovery's calls refuse lost ranks, also while recovering.
  rpc_options during;
  during.recovery = true;
  auto lost_call = f.ask<std::vector<std::string>>(rpc_atom::value, std::string("noop"),
                                                   std::string("null"), during);
  REQUIRE_FALSE(lost_call);
  CHECK(code_of(lost_call.error()) == errc::worker_lost);
  // The host replaces both; they read rebuilding until the recovery ends.
  REQUIRE(f.replace(0));
  REQUIRE(f.replace(1));
  h = f.health();
  CHECK(h[0].state == health_state::rebuilding);
  CHECK(h[1].state == health_state::rebuilding);
  CHECK(h[1].node_id == "n1b");
  REQUIRE(f.ask<bool>(recovered_atom::value, true, std::string()));
  for (const auto& w : f.health()) {
    CHECK_MESSAGE(w.state == health_state::healthy, w.rank << ": " << to_string(w.state));
    CHECK(w.cause.what == failure_cause::kind::none);
    CHECK(w.detail.empty());
  }
  // Steps run again on the new workers (a fresh compile).
  f.scripts[2]->answer_steps = true; // the replacement of rank 0
  auto step = f.submit(2);
  auto out = step.result();
  REQUIRE_MESSAGE(out, describe(out.error()));
  CHECK(out->step_id == 2);
}

TEST_CASE("restart policy: the same rank lost twice is recovered twice") {
  fixture f{2, true};
  f.lose(1);
  REQUIRE(f.recoveries.size() == 1);
  REQUIRE(f.replace(1));
  REQUIRE(f.ask<bool>(recovered_atom::value, true, std::string()));
  CHECK(f.health()[1].state == health_state::healthy);
  // A step is in flight on the replacement (fakes[2]) when it dies too: the step fails,
  // and a second recovery starts with this loss's cause.
  auto held = f.submit(4);
  CHECK(f.scripts[2]->executes == 1);
  REQUIRE_FALSE(held.answered());
  f.agent_does->answer = process_ended(true, SIGSEGV);
  f.lose(2);
  auto lost = held.result();
  REQUIRE_FALSE(lost);
  CHECK(code_of(lost.error()) == errc::worker_lost);
  REQUIRE(f.recoveries.size() == 2);
  CHECK(f.recoveries[1].first == 1);
  CHECK_MESSAGE(has(f.recoveries[1].second, "SIGSEGV"), f.recoveries[1].second);
  auto h = f.health();
  CHECK(h[1].state == health_state::restarting);
  CHECK(h[1].cause.code == SIGSEGV);
  CHECK(h[0].state == health_state::rebuilding);
  // The host gives up: every rank is dead, and says why.
  REQUIRE(f.ask<bool>(recovered_atom::value, false, std::string("no bundle left")));
  h = f.health();
  CHECK(h[0].state == health_state::dead);
  CHECK(h[1].state == health_state::dead);
  CHECK_MESSAGE(has(h[0].detail, "recovery failed: no bundle left"), h[0].detail);
  auto step = f.submit(5);
  auto r = step.result();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::worker_lost);
}

TEST_CASE("restart policy: a rank lost during start-up fails start-up and says so") {
  // Killed during load_model: no recovery runs (start-up fails and the host sees why),
  // and no message promises a replacement.
  fixture f{2, true, false};
  f.lose(1);
  CHECK(f.recoveries.empty());
  auto h = f.health();
  CHECK(h[1].state == health_state::dead);
  auto call = f.ask<std::vector<std::string>>(rpc_atom::value, std::string("load_model"),
                                              std::string("null"), rpc_options{});
  REQUIRE_FALSE(call);
  CHECK(code_of(call.error()) == errc::worker_lost);
  auto what = describe(call.error());
  CHECK_MESSAGE((!has(what, "replacing") && !has(what, "replaces")), what);
  CHECK_MESSAGE(has(what, "rank 1"), what);
}

TEST_CASE("a rerank moves every per-rank field together") {
  driver_state st;
  REQUIRE_FALSE(take_workers(st, std::vector<worker_actor>(3), {"a", "b", "c"}, 3, 1));
  st.ranks[2].gone = true;
  st.ranks[2].state = health_state::dead;
  st.ranks[2].cause = process_ended(false, 1);
  st.ranks[2].why = "exit code 1";
  st.ranks[1].node_ip = "10.0.0.2";
  REQUIRE_FALSE(apply_rerank(st, {2, 0, 1}));
  CHECK(st.ranks[0].node_id == "c");
  CHECK(st.ranks[0].gone);
  CHECK(st.ranks[0].state == health_state::dead);
  CHECK(st.ranks[0].cause.what == failure_cause::kind::exited);
  CHECK(st.ranks[0].why == "exit code 1");
  CHECK(st.ranks[1].node_id == "a");
  CHECK(st.ranks[2].node_id == "b");
  CHECK(st.ranks[2].node_ip == "10.0.0.2");
  auto h = health_report(st);
  CHECK(h[0].state == health_state::dead);
  CHECK(h[1].state == health_state::healthy);
  // Not a permutation, or the wrong size: refused, nothing moved.
  CHECK(apply_rerank(st, {0, 0, 1}));
  CHECK(apply_rerank(st, {0, 1}));
  CHECK(st.ranks[0].node_id == "c");
}
