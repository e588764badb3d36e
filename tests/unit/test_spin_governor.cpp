// The spin a hot-path reader allows itself before its next message (spin_governor.hpp).
#include <doctest/doctest.h>

#include "transport/spin_governor.hpp"

using namespace cafex;
using us = std::chrono::microseconds;

TEST_CASE("back-to-back messages keep the full spin") {
  spin_governor g{us{20000}};
  CHECK(g.budget() == us{20000});
  for (int i = 0; i < 100; ++i)
    g.saw(us{15});
  CHECK(g.budget() == us{20000});
  g.saw(us{20000}); // exactly the budget: the spin would have caught it
  CHECK(g.budget() == us{20000});
}

TEST_CASE("messages further apart than the spin halve it, down to none") {
  spin_governor g{us{20000}, us{100}};
  g.saw(us{50000});
  CHECK(g.budget() == us{10000});
  g.saw(us{50000});
  CHECK(g.budget() == us{5000});
  int more = 0;
  while (g.budget() > us{0}) {
    g.saw(us{50000});
    ++more;
  }
  // 5000 -> 2500 -> 1250 -> 625 -> 312 -> 156 -> 78 (under the floor: none)
  CHECK(more == 6);
  // The wasted spin of an idle stretch is bounded: about twice the full budget in all.
  g.saw(us{1000000});
  CHECK(g.budget() == us{0});
}

TEST_CASE("one message within the full budget brings the full spin back") {
  spin_governor g{us{20000}};
  for (int i = 0; i < 20; ++i)
    g.saw(us{100000});
  REQUIRE(g.budget() == us{0});
  g.saw(us{12}); // woke from a sleep 12 us later: steps come back to back again
  CHECK(g.budget() == us{20000});
}

TEST_CASE("a zero budget never spins") {
  spin_governor g{us{0}};
  CHECK(g.budget() == us{0});
  g.saw(us{0});
  CHECK(g.budget() == us{0});
  g.saw(us{10});
  CHECK(g.budget() == us{0});
}
