// The shared-memory ring between processes: order, wrap-around, full/empty waits with
// deadlines, close, and a real second process.
#include <doctest/doctest.h>

#include <cstring>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "runtime/error.hpp"
#include "transport/shm_ring.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

std::string unique(const char* what) {
  return "/cafex-test-" + std::to_string(getpid()) + "-" + what;
}

caf::error put(shm_ring& r, const std::string& s, std::chrono::milliseconds t = 1s) {
  return r.write({{s.data(), s.size()}}, t);
}

std::string get(shm_ring& r, std::chrono::milliseconds t = 1s) {
  auto m = r.read(t);
  REQUIRE_MESSAGE(m, describe(m.error()));
  return std::string(m->begin(), m->end());
}

} // namespace

TEST_CASE("messages arrive whole and in order, across wrap-around") {
  auto w = shm_ring::create(unique("order"), 256);
  REQUIRE(w);
  auto r = shm_ring::open(unique("order"));
  REQUIRE(r);
  // Both ends are mapped: drop the name now, as the driver does, so that a test killed
  // mid-way (a sanitizer halt, a timeout) leaves nothing in /dev/shm.
  (*w)->unlink();
  CHECK(access(("/dev/shm" + unique("order")).c_str(), F_OK) != 0);
  for (int round = 0; round < 50; ++round) {
    REQUIRE_FALSE(put(**w, "alpha" + std::to_string(round)));
    REQUIRE_FALSE(put(**w, std::string(round % 90, 'x')));
    CHECK(get(**r) == "alpha" + std::to_string(round));
    CHECK(get(**r) == std::string(round % 90, 'x'));
  }
}

TEST_CASE("a full ring makes the writer wait with a deadline; an empty one the reader") {
  auto w = shm_ring::create(unique("full"), 64);
  REQUIRE(w);
  REQUIRE_FALSE(put(**w, std::string(40, 'a')));
  auto t0 = std::chrono::steady_clock::now();
  auto err = put(**w, std::string(40, 'b'), 100ms);
  CHECK(code_of(err) == errc::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  // A reader frees space and wakes the writer.
  std::thread reader([&] { CHECK(get(**w) == std::string(40, 'a')); });
  CHECK_FALSE(put(**w, std::string(40, 'b'), 2s));
  reader.join();
  CHECK(get(**w) == std::string(40, 'b'));
  auto empty = (*w)->read(50ms);
  REQUIRE_FALSE(empty);
  CHECK(code_of(empty.error()) == errc::timeout);
  auto huge = put(**w, std::string(100, 'c'));
  CHECK(code_of(huge) == errc::transport_failed);
}

TEST_CASE("close wakes a waiting reader at once") {
  auto w = shm_ring::create(unique("close"), 256);
  REQUIRE(w);
  std::thread closer([&] { (*w)->close(); });
  auto r = (*w)->read(5s);
  closer.join();
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::transport_failed);
}

TEST_CASE("a second process reads what the first wrote, and rings a doorbell") {
  // Names are fixed before fork: the child has another pid.
  auto ring_name = unique("proc"), back_name = unique("back"), bell_name = unique("bell");
  auto ring = shm_ring::create(ring_name, 1 << 16);
  auto back = shm_ring::create(back_name, 1 << 16);
  auto bell = shm_doorbell::create(bell_name);
  REQUIRE(ring);
  REQUIRE(back);
  REQUIRE(bell);
  pid_t child = fork();
  if (child == 0) {
    auto in = shm_ring::open(ring_name);
    auto out = shm_ring::open(back_name);
    auto b = shm_doorbell::open(bell_name);
    if (!in || !out || !b)
      _exit(3);
    for (int i = 0; i < 100; ++i) {
      auto m = (*in)->read(5s);
      if (!m)
        _exit(4);
      if ((*out)->write({{m->data(), m->size()}}, 5s, b->get()))
        _exit(5);
    }
    _exit(0);
  }
  for (int i = 0; i < 100; ++i) {
    auto seen = (*bell)->value();
    std::string msg = "ping " + std::to_string(i);
    REQUIRE_FALSE(put(**ring, msg));
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while ((*bell)->value() == seen && std::chrono::steady_clock::now() < deadline)
      (*bell)->wait(seen, 100ms);
    REQUIRE((*bell)->value() != seen);
    CHECK(get(**back) == msg);
  }
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("opening a missing or foreign segment is a clear error") {
  auto r = shm_ring::open(unique("missing"));
  REQUIRE_FALSE(r);
  CHECK(describe(r.error()).find("missing") != std::string::npos);
  auto dup = shm_ring::create(unique("dup"), 64);
  REQUIRE(dup);
  CHECK_FALSE(shm_ring::create(unique("dup"), 64));
}

TEST_CASE("a write wakes a sleeping reader and a ring wakes a doorbell sleeper, every time") {
  // A write makes the wake-up system call only when the reader registered as asleep: a
  // lost wake-up would leave the reader asleep until its 5 s deadline.
  auto ring = shm_ring::create(unique("wake"), 4096);
  REQUIRE(ring);
  auto bell = shm_doorbell::create(unique("wake-bell"));
  REQUIRE(bell);
  for (int round = 0; round < 300; ++round) {
    INFO("round " << round);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<char> out;
    caf::error got;
    std::thread reader([&] { got = (*ring)->read(out, 5s, round % 2 ? 20us : 0us); });
    auto seen = (*bell)->value();
    std::thread sleeper([&] { (*bell)->wait(seen, 5s, round % 3 ? 0us : 20us); });
    REQUIRE_FALSE(put(**ring, "m" + std::to_string(round)));
    (*bell)->ring();
    reader.join();
    sleeper.join();
    REQUIRE_FALSE(got);
    CHECK(std::string(out.begin(), out.end()) == "m" + std::to_string(round));
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  }
}

TEST_CASE("a board keeps each slot's last value; past the end reads 0") {
  auto board = shm_board::create(unique("board"), 3);
  REQUIRE(board);
  auto peer = shm_board::open(unique("board"));
  REQUIRE(peer);
  (*board)->set(1, 42);
  (*peer)->set(2, 7);
  CHECK((*peer)->get(1) == 42);
  CHECK((*board)->get(2) == 7);
  CHECK((*board)->get(0) == 0);
  CHECK((*board)->get(9) == 0);
  (*board)->set(9, 1); // ignored
  (*board)->unlink();
  CHECK_FALSE(shm_board::open(unique("board")));
}
