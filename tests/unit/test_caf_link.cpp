// CAF links over sockets cafex connected itself (transport/caf_link.hpp): the client side
// of BASP's handshake against a slow peer, a silent peer and a peer that hangs up.
#include <doctest/doctest.h>

#include <chrono>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <caf/all.hpp>

#include "actors/system_config.hpp"
#include "runtime/error.hpp"
#include "tests/support/processes.hpp"
#include "transport/caf_link.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

caf::behavior adder(caf::event_based_actor*) {
  return {[](int32_t x) { return x + 1; }};
}

/// The serving side in a child process (a second actor system in this process would have
/// this process's node id): serves `adder` on `fd` once `delay` has passed, and ends when
/// `quit_fd` is closed.
pid_t serve_in_child(int fd, int other_end, int quit_fd, int quit_other,
                     std::chrono::milliseconds delay) {
  pid_t pid = ::fork();
  if (pid != 0)
    return pid;
  ::close(other_end);
  ::close(quit_other);
  // The peer under test: slower than several of the client's heartbeat ticks.
  std::this_thread::sleep_for(delay);
  {
    system_config cfg;
    caf::actor_system sys{cfg};
    auto a = sys.spawn(adder);
    caf_link_serve(sys, fd, caf::actor_cast<caf::strong_actor_ptr>(a), {});
    char c;
    while (::read(quit_fd, &c, 1) > 0) {
    }
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
  ::_exit(0);
}

} // namespace

TEST_CASE("a peer whose handshake comes after several heartbeat ticks still links") {
  // CAF 0.17.6 alone closes such a link at its next tick (connection_timeout): this run's
  // peer answers after 3.5 heartbeat intervals.
  liveness_options live;
  const auto delay = live.heartbeat_interval * 7 / 2;
  auto link = make_socketpair();
  auto quit = make_socketpair();
  REQUIRE(link);
  REQUIRE(quit);
  pid_t child = serve_in_child(link->second, link->first, quit->second, quit->first, delay);
  REQUIRE(child > 0);
  ::close(link->second);
  ::close(quit->second);
  {
    system_config cfg{live};
    caf::actor_system sys{cfg};
    auto ptr = caf_link_connect(sys, link->first, 10s, "the slow peer");
    const std::string why = ptr ? std::string{} : describe(ptr.error());
    INFO(why);
    REQUIRE(ptr);
    caf::scoped_actor self{sys};
    int32_t got = 0;
    self->request(caf::actor_cast<caf::actor>(*ptr), 10s, int32_t{41})
      .receive([&](int32_t x) { got = x; }, [&](caf::error& e) { FAIL(sys.render(e)); });
    CHECK(got == 42);
    ::close(quit->first);
  }
  int status = 0;
  REQUIRE(test::wait_until([&] { return ::waitpid(child, &status, WNOHANG) == child; }, 20s));
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE(
  "a peer that never sends its handshake fails the connect in time, closing the socket") {
  auto link = make_socketpair();
  REQUIRE(link);
  system_config cfg;
  caf::actor_system sys{cfg};
  auto start = std::chrono::steady_clock::now();
  auto ptr = caf_link_connect(sys, link->first, 300ms, "the silent peer");
  auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(ptr);
  CHECK(code_of(ptr.error()) == errc::node_lost);
  auto text = describe(ptr.error());
  CHECK(text.find("the silent peer") != std::string::npos);
  CHECK(text.find("no CAF handshake within 300 ms") != std::string::npos);
  CHECK(took < 5s);
  char c;
  CHECK(::read(link->second, &c, 1) == 0); // our end was closed: EOF here
  ::close(link->second);
}

TEST_CASE("a peer that hangs up before its handshake is reported, not waited for") {
  auto link = make_socketpair();
  REQUIRE(link);
  ::close(link->second);
  system_config cfg;
  caf::actor_system sys{cfg};
  auto start = std::chrono::steady_clock::now();
  auto ptr = caf_link_connect(sys, link->first, 10s, "the vanished peer");
  REQUIRE_FALSE(ptr);
  CHECK(code_of(ptr.error()) == errc::node_lost);
  CHECK(describe(ptr.error()).find("the vanished peer") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}
