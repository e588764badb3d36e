// The driver around a teardown, deterministically (driver_fixture.hpp): steps submitted
// while the communicators are rebuilt wait for the executor's word, a teardown with
// nothing in flight leaves them, and a failed or missed rebuild fails the steps that
// waited.
#include "driver_fixture.hpp"

using namespace cafex;
using namespace cafex::driver_test;

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
