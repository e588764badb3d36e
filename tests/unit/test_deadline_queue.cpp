#include <doctest/doctest.h>

#include <chrono>

#include "runtime/dataflow/deadline_queue.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

const deadline_queue::time_point t0{};

/// Drives a queue as an actor does: `timers` counts the timer messages armed and not
/// yet fired, the number a bounded queue keeps at most at one.
struct fake_actor {
  deadline_queue q;
  int timers = 0;
  deadline_queue::time_point next_fire{};

  void arm(std::optional<deadline_queue::time_point> at) {
    if (!at)
      return;
    ++timers;
    next_fire = *at;
  }
  void call(uint64_t key, deadline_queue::time_point now, std::chrono::seconds timeout) {
    arm(q.add(key, now + timeout));
  }
  std::vector<uint64_t> fire() {
    --timers;
    auto e = q.expire(next_fire);
    arm(e.arm_at);
    return e.keys;
  }
};

} // namespace

TEST_CASE("many calls answered in time keep one timer armed, not one per call") {
  fake_actor a;
  for (uint64_t k = 0; k < 20000; ++k) {
    a.call(k, t0 + std::chrono::milliseconds(k), 300s);
    a.q.remove(k); // answered at once
  }
  CHECK(a.timers == 1);
  CHECK(a.q.size() == 0);
  // The one timer fires for the first call's deadline; nothing is left to re-arm for.
  CHECK(a.fire().empty());
  CHECK(a.timers == 0);
  CHECK_FALSE(a.q.armed());
}

TEST_CASE("each overdue call expires at its own deadline, in order") {
  fake_actor a;
  a.call(0, t0, 10s);
  a.call(1, t0 + 2s, 10s);
  a.call(2, t0 + 4s, 10s);
  CHECK(a.timers == 1);
  a.q.remove(1);
  CHECK(a.fire() == std::vector<uint64_t>{0});
  CHECK(a.next_fire == t0 + 14s); // call 1 was answered: straight to call 2's deadline
  CHECK(a.timers == 1);
  CHECK(a.fire() == std::vector<uint64_t>{2});
  CHECK(a.timers == 0);
}

TEST_CASE("a call added while an overdue one is handled does not hide an earlier deadline") {
  fake_actor a;
  a.call(0, t0, 10s);
  a.call(1, t0 + 2s, 10s);
  auto e = a.q.expire(t0 + 10s);
  --a.timers;
  a.arm(e.arm_at); // for call 1, at 12 s
  REQUIRE(e.keys == std::vector<uint64_t>{0});
  a.call(2, t0 + 10s, 10s); // handling call 0 dispatched the next one
  CHECK(a.timers == 1);
  CHECK(a.next_fire == t0 + 12s);
}

TEST_CASE("an earlier deadline than the armed timer's arms a second timer") {
  deadline_queue q;
  CHECK(q.add(0, t0 + 10s) == t0 + 10s);
  CHECK(q.add(1, t0 + 20s) == std::nullopt);
  CHECK(q.add(2, t0 + 5s) == t0 + 5s); // a shorter timeout: the armed timer is too late
  auto e = q.expire(t0 + 5s);
  CHECK(e.keys == std::vector<uint64_t>{2});
  CHECK(e.arm_at == t0 + 10s);
  // The stale first timer, and the one just armed, both fire at 10 s: one call expires,
  // and only then is a timer armed for the last one.
  e = q.expire(t0 + 10s);
  CHECK(e.keys == std::vector<uint64_t>{0});
  CHECK(e.arm_at == t0 + 20s);
  e = q.expire(t0 + 10s);
  CHECK(e.keys.empty());
  CHECK(e.arm_at == std::nullopt);
}
