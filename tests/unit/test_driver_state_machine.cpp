// The driver actor's state machine, deterministically (driver_fixture.hpp): losses during
// steps, lost links, recovery under the restart policy, reranks. The waits around a
// teardown's rebuild are in test_driver_rebuild.cpp.
#include "driver_fixture.hpp"

using namespace cafex;
using namespace cafex::driver_test;

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
