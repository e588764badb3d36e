// Gloo groups of 2 and 4 ranks as threads in one process, each rank with its own Gloo
// context, meeting through one real rendezvous server on 127.0.0.1.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <vector>

#include <gloo/transport/context.h>
#include <gloo/transport/tcp/device.h>

#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_server.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

gloo_options options_for(const rendezvous_server& srv, const std::string& group, int rank,
                         int size, std::chrono::milliseconds timeout = 20s) {
  gloo_options o;
  o.store = srv.address();
  o.group = group;
  o.rank = rank;
  o.size = size;
  o.timeout = timeout;
  return o;
}

// Runs `body` on every rank of a fresh group, one thread per rank; collects what each
// rank reports ("" means it passed) so assertions happen on the test thread.
std::vector<std::string> run_group(const rendezvous_server& srv, const std::string& group,
                                   int size,
                                   const std::function<std::string(gloo_collective&)>& body) {
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < size; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      auto c = make_gloo_collective(options_for(srv, group, r, size));
      if (!c)
        return "rank " + std::to_string(r) + ": " + describe(c.error());
      return body(**c);
    }));
  std::vector<std::string> out;
  for (auto& f : ranks) {
    // Bounded: a hang fails the test instead of eating the ctest timeout.
    if (f.wait_for(60s) != std::future_status::ready) {
      out.push_back("a rank did not finish within 60 s");
      continue;
    }
    out.push_back(f.get());
  }
  return out;
}

void check_all_passed(const std::vector<std::string>& results) {
  for (auto& r : results)
    CHECK_MESSAGE(r.empty(), r);
}

// Crafted so every rank's contribution differs and the exact sum is known: large
// magnitudes, negative values, and no two elements alike.
int64_t contribution(int rank, size_t i) {
  auto r = static_cast<int64_t>(rank);
  auto x = static_cast<int64_t>(i);
  return (r + 1) * 1'000'003 * x - (r * 7 + 3) * (int64_t{1} << 40) + (x % 2 ? -r : r);
}

int64_t expected_sum(int size, size_t i) {
  int64_t s = 0;
  for (int r = 0; r < size; ++r)
    s += contribution(r, i);
  return s;
}

uint8_t pattern(size_t i, uint32_t seed) {
  return static_cast<uint8_t>((i * 131 + seed * 17 + (i >> 12)) & 0xff);
}

} // namespace

TEST_CASE("all_reduce_sum gives exact int64 sums for 2 and 4 ranks") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  for (int size : {2, 4}) {
    CAPTURE(size);
    auto results =
      run_group(srv, "ar" + std::to_string(size), size, [size](gloo_collective& c) {
        // 1 element, an odd count, and 2 MiB (more than Gloo's 1 MiB segment per rank).
        for (size_t count : {size_t{1}, size_t{1001}, size_t{1} << 18}) {
          std::vector<int64_t> data(count);
          for (size_t i = 0; i < count; ++i)
            data[i] = contribution(c.rank(), i);
          if (auto err = c.all_reduce_sum(data.data(), count))
            return describe(err);
          for (size_t i = 0; i < count; ++i)
            if (data[i] != expected_sum(size, i))
              return "rank " + std::to_string(c.rank()) + ": element " + std::to_string(i)
                     + " of " + std::to_string(count) + " is " + std::to_string(data[i])
                     + ", expected " + std::to_string(expected_sum(size, i));
        }
        return std::string{};
      });
    check_all_passed(results);
  }
}

TEST_CASE("float32 all-reduce, all_gather (in place too) and broadcast for 2 and 3 ranks") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  for (int size : {2, 3}) {
    CAPTURE(size);
    auto results =
      run_group(srv, "ops" + std::to_string(size), size, [size](gloo_collective& c) {
        const int me = c.rank();
        auto fail = [&](const std::string& what) {
          return "rank " + std::to_string(me) + ": " + what;
        };
        // Small integers in float: every sum is exact, whatever the order.
        std::vector<float> f(1001);
        for (size_t i = 0; i < f.size(); ++i)
          f[i] = static_cast<float>((i % 97) * (me + 1));
        if (auto err = c.all_reduce_sum_f32(f.data(), f.size()))
          return fail(describe(err));
        const float weights = static_cast<float>(size * (size + 1) / 2);
        for (size_t i = 0; i < f.size(); ++i)
          if (f[i] != static_cast<float>(i % 97) * weights)
            return fail("float sum wrong at " + std::to_string(i));
        const size_t bytes = 777; // not a multiple of anything
        std::vector<uint8_t> mine(bytes), all(bytes * static_cast<size_t>(size));
        for (size_t i = 0; i < bytes; ++i)
          mine[i] = pattern(i, static_cast<uint32_t>(me));
        if (auto err = c.all_gather(mine.data(), all.data(), bytes))
          return fail(describe(err));
        std::vector<uint8_t> in_place(all.size(), 0);
        std::memcpy(in_place.data() + bytes * static_cast<size_t>(me), mine.data(), bytes);
        if (auto err = c.all_gather(in_place.data() + bytes * static_cast<size_t>(me),
                                    in_place.data(), bytes))
          return fail(describe(err));
        for (int r = 0; r < size; ++r)
          for (size_t i = 0; i < bytes; ++i) {
            auto want = pattern(i, static_cast<uint32_t>(r));
            if (all[bytes * static_cast<size_t>(r) + i] != want
                || in_place[bytes * static_cast<size_t>(r) + i] != want)
              return fail("all_gather wrong for rank " + std::to_string(r));
          }
        std::vector<uint8_t> b(bytes, 0);
        if (me == size - 1)
          b = mine;
        if (auto err = c.broadcast(b.data(), bytes, size - 1))
          return fail(describe(err));
        for (size_t i = 0; i < bytes; ++i)
          if (b[i] != pattern(i, static_cast<uint32_t>(size - 1)))
            return fail("broadcast wrong at " + std::to_string(i));
        if (code_of(c.broadcast(b.data(), bytes, size)) != errc::invalid_argument)
          return fail("a broadcast from a rank outside the group was not refused");
        return std::string{};
      });
    check_all_passed(results);
  }
}

TEST_CASE("send and recv move 1 MiB and 16 MiB exactly, both directions") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto results = run_group(srv, "pp/0-1", 2, [](gloo_collective& c) {
    uint32_t tag = 0;
    for (size_t bytes : {size_t{1} << 20, size_t{16} << 20}) {
      for (int sender : {0, 1}) {
        ++tag;
        std::vector<uint8_t> buf(bytes);
        if (c.rank() == sender) {
          for (size_t i = 0; i < bytes; ++i)
            buf[i] = pattern(i, tag);
          if (auto err = c.send(buf.data(), bytes, 1 - sender, tag))
            return describe(err);
        } else {
          if (auto err = c.recv(buf.data(), bytes, sender, tag))
            return describe(err);
          for (size_t i = 0; i < bytes; ++i)
            if (buf[i] != pattern(i, tag))
              return "byte " + std::to_string(i) + " of " + std::to_string(bytes)
                     + " differs (tag " + std::to_string(tag) + ")";
        }
      }
    }
    return std::string{};
  });
  check_all_passed(results);
}

TEST_CASE("groups with different names share one server without colliding") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  // Two TP groups (two PP stages) connect at the same time with the same ranks.
  auto stage = [&](const std::string& name, int64_t base) {
    return std::async(std::launch::async, [&srv, name, base] {
      return run_group(srv, name, 2, [base](gloo_collective& c) {
        int64_t x = base + c.rank();
        if (auto err = c.all_reduce_sum(&x, 1))
          return describe(err);
        return x == 2 * base + 1 ? std::string{} : "sum " + std::to_string(x);
      });
    });
  };
  auto a = stage("pp0/tp", 100);
  auto b = stage("pp1/tp", 5000);
  check_all_passed(a.get());
  check_all_passed(b.get());
}

TEST_CASE("a rank whose peer never shows up fails within its deadline") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto t0 = clock_type::now();
  auto c = make_gloo_collective(options_for(srv, "lonely", 0, 2, 500ms));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
  REQUIRE_FALSE(c);
  CHECK(code_of(c.error()) == errc::timeout);
  auto text = describe(c.error());
  MESSAGE(text); // shows what an operator would read
  CHECK(text.find("gloo group 'lonely' rank 0/2") != std::string::npos);
  CHECK(took < 2000ms);
}

/// Rank 1 of a group of two that published its address in the rendezvous and then died
/// before connecting (a real Gloo pair that never connects). It listens on 127.0.0.2, so
/// rank 0 (on 127.0.0.1) is always the side of the pair that waits for the connection:
/// Gloo's own wait there is five times the group's timeout.
struct published_then_dead {
  std::shared_ptr<gloo::transport::Device> dev;
  std::shared_ptr<gloo::transport::Context> ctx;

  published_then_dead(const rendezvous_server& srv, const std::string& group) {
    gloo::transport::tcp::attr attr;
    attr.hostname = "127.0.0.2";
    dev = gloo::transport::tcp::CreateDevice(attr);
    ctx = dev->createContext(1, 2);
    auto bytes = ctx->createPair(0)->address().bytes();
    auto c = rendezvous_client::connect(srv.address(), 5s);
    REQUIRE_MESSAGE(c, describe(c.error()));
    // connectFullMesh's keys: "rank_R" (the host name) and "R" (the pairs' addresses).
    REQUIRE(!(*c)->set(group + "/rank_1", {'x'}, 1s));
    REQUIRE(!(*c)->set(group + "/1", bytes, 1s));
  }
};

/// Blocks until rank 0 of `group` has published its own addresses: it then goes on to
/// connect its pair to rank 1.
void wait_published(const rendezvous_server& srv, const std::string& group) {
  auto c = rendezvous_client::connect(srv.address(), 5s);
  REQUIRE_MESSAGE(c, describe(c.error()));
  REQUIRE((*c)->get(group + "/0", 10s));
}

TEST_CASE("a rank whose peer published its address and died fails within its deadline") {
  // Issue #14, item 5: Gloo waits five times the timeout for the peer of a pair to
  // connect; the rendezvous must end at the group's own deadline.
  rendezvous_server srv;
  REQUIRE(!srv.start());
  published_then_dead peer(srv, "dead");
  auto t0 = clock_type::now();
  auto c = make_gloo_collective(options_for(srv, "dead", 0, 2, 1s));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
  REQUIRE_FALSE(c);
  MESSAGE(describe(c.error()));
  CHECK(code_of(c.error()) == errc::timeout);
  CHECK(took < 2500ms);
}

TEST_CASE("a rank connecting to a peer that died lets go when a newer generation starts") {
  // Issue #14, item 5: a rebuild cut short by a second loss leaves its ranks waiting for
  // the dead peer; the next rebuild fences the old generation off on the server, and a
  // rank still connecting under it must give up at once, not at its deadline.
  rendezvous_server srv;
  REQUIRE(!srv.start());
  published_then_dead peer(srv, "tp1/g1");
  auto o = options_for(srv, "tp1/g1", 0, 2, 30s);
  o.generation = 1;
  auto rank0 = std::async(std::launch::async, [&] { return make_gloo_collective(o); });
  wait_published(srv, "tp1/g1");
  auto t0 = clock_type::now();
  srv.fence(2);
  REQUIRE(rank0.wait_for(10s) == std::future_status::ready);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t0);
  auto c = rank0.get();
  REQUIRE_FALSE(c);
  MESSAGE(describe(c.error()));
  CHECK(code_of(c.error()) == errc::transport_failed);
  CHECK(describe(c.error()).find("superseded") != std::string::npos);
  CHECK(took < 2000ms);
  // The next generation meets as usual on the same server.
  std::vector<std::future<std::string>> ranks;
  ranks.reserve(2);
  for (int r = 0; r < 2; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      auto g = options_for(srv, "tp1/g2", r, 2);
      g.generation = 2;
      auto c2 = make_gloo_collective(g);
      if (!c2)
        return describe(c2.error());
      std::vector<int64_t> x{r + 1};
      auto err = (*c2)->all_reduce_sum(x.data(), x.size());
      if (err)
        return describe(err);
      return x[0] == 3 ? "" : "wrong sum " + std::to_string(x[0]);
    }));
  for (auto& f : ranks) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    auto r = f.get();
    CHECK_MESSAGE(r.empty(), r);
  }
}

TEST_CASE("a recv whose peer never sends times out and breaks the group") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  std::promise<void> receiver_done;
  auto done = receiver_done.get_future().share();
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      auto c = make_gloo_collective(options_for(srv, "silent", r, 2, 400ms));
      if (!c)
        return describe(c.error());
      if (r == 1) {
        // Rank 1 stays connected but sends nothing until rank 0 has given up.
        done.wait_for(10s);
        return {};
      }
      std::vector<char> buf(1024);
      auto t0 = clock_type::now();
      auto err = (*c)->recv(buf.data(), buf.size(), 1, 7);
      auto took = clock_type::now() - t0;
      receiver_done.set_value();
      if (code_of(err) != errc::timeout)
        return "expected timeout, got " + describe(err);
      if (took > 2s)
        return "recv took too long";
      if (!(*c)->broken())
        return "group not marked broken";
      auto again = (*c)->send(buf.data(), buf.size(), 1, 8);
      if (code_of(again) != errc::transport_failed)
        return "expected transport_failed after breaking, got " + describe(again);
      return {};
    }));
  for (auto& f : ranks) {
    REQUIRE(f.wait_for(30s) == std::future_status::ready);
    auto r = f.get();
    CHECK_MESSAGE(r.empty(), r);
  }
}

TEST_CASE("inconsistent options are refused before touching the network") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto bad_rank = make_gloo_collective(options_for(srv, "g", 2, 2));
  REQUIRE_FALSE(bad_rank);
  CHECK(code_of(bad_rank.error()) == errc::invalid_argument);
  auto bad_peer = make_gloo_collective(options_for(srv, "solo", 0, 1));
  REQUIRE(bad_peer);
  int64_t x = 42;
  CHECK(!(*bad_peer)->all_reduce_sum(&x, 1));
  CHECK(x == 42);
  char byte = 0;
  CHECK(code_of((*bad_peer)->send(&byte, 1, 0, 0)) == errc::invalid_argument);
}
