// A node agent's worker routes: route numbers, passing a descriptor to the route's
// worker over its channel (SCM_RIGHTS), and what happens once the route is gone.
#include <doctest/doctest.h>

#include <string>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/fd_passing.hpp"
#include "transport/caf_link.hpp"
#include "transport/worker_routes.hpp"

using namespace cafex;

TEST_CASE("a passed descriptor reaches the route's worker and works there") {
  auto routes = std::make_shared<worker_routes>();
  auto ch = make_socketpair();
  REQUIRE(ch);
  auto r = routes->add(ch->first);
  REQUIRE(r);
  CHECK(*r != 0);
  CHECK(routes->has(*r));
  CHECK_FALSE(routes->has(static_cast<uint16_t>(*r + 1)));
  int p[2];
  REQUIRE(pipe(p) == 0);
  CHECK_FALSE(routes->pass(*r, p[1])); // closes p[1] here
  int got = receive_fd(ch->second);
  REQUIRE(got >= 0);
  CHECK(write(got, "hi", 2) == 2);
  close(got);
  char buf[3] = {};
  CHECK(read(p[0], buf, 2) == 2);
  CHECK(std::string(buf) == "hi");
  close(p[0]);
  // The worker's end closing ends its receive loop.
  routes->remove(*r);
  CHECK(receive_fd(ch->second) == -1);
  close(ch->second);
}

TEST_CASE("a route that is gone refuses, and the descriptor is closed anyway") {
  worker_routes routes;
  int p[2];
  REQUIRE(pipe(p) == 0);
  auto err = routes.pass(7, p[1]);
  CHECK(code_of(err) == errc::worker_lost);
  char c;
  CHECK(read(p[0], &c, 1) == 0); // the write end was closed: EOF
  close(p[0]);
}

TEST_CASE("route numbers are reused only once free, and a lease gives its route back") {
  auto routes = std::make_shared<worker_routes>();
  std::vector<uint16_t> taken;
  for (int i = 0; i < 3; ++i) {
    auto ch = make_socketpair();
    REQUIRE(ch);
    close(ch->second);
    auto r = routes->add(ch->first);
    REQUIRE(r);
    taken.push_back(*r);
  }
  CHECK(taken[0] != taken[1]);
  CHECK(taken[1] != taken[2]);
  {
    route_lease lease(routes, taken[1]);
    route_lease moved(std::move(lease));
    CHECK(lease.route() == 0);
    CHECK(moved.route() == taken[1]);
  }
  CHECK_FALSE(routes->has(taken[1]));
  CHECK(routes->has(taken[0]));
}
