// TCP-mesh groups of 2 to 4 ranks as threads in one process, meeting through one real
// rendezvous server on 127.0.0.1.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "runtime/error.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_server.hpp"
#include "transport/tcp_collective.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct server_fixture {
  rendezvous_server srv;
  server_fixture() { REQUIRE(!srv.start()); }
};

caf::expected<std::unique_ptr<tcp_collective>>
join(const rendezvous_server& srv, const std::string& group, int rank, int size,
     std::chrono::milliseconds timeout = 20s) {
  auto store = rendezvous_client::connect(srv.address(), 10s);
  if (!store)
    return store.error();
  tcp_collective_options o;
  o.group = group;
  o.rank = rank;
  o.size = size;
  o.timeout = timeout;
  return make_tcp_collective(**store, o);
}

// One thread per rank; what each rank reports ("" = passed) is checked on the test thread.
std::vector<std::string> run_group(const rendezvous_server& srv, const std::string& group,
                                   int size,
                                   const std::function<std::string(tcp_collective&)>& body) {
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < size; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      auto c = join(srv, group, r, size);
      if (!c)
        return "rank " + std::to_string(r) + ": " + describe(c.error());
      return body(**c);
    }));
  std::vector<std::string> out;
  for (auto& f : ranks) {
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

int64_t contribution(int rank, size_t i) {
  auto r = static_cast<int64_t>(rank);
  auto x = static_cast<int64_t>(i);
  return (r + 1) * 1'000'003 * x - (r * 7 + 3) * (int64_t{1} << 40) + (x % 2 ? -r : r);
}

float fcontribution(int rank, size_t i) {
  // Magnitudes that make float addition order visible in the low bits.
  return static_cast<float>(std::sin(static_cast<double>(i) * 0.37 + rank) * 1e3
                            + (rank + 1) * 1e-3 * static_cast<double>(i % 97));
}

// Sizes on every path: tiny, not a multiple of the rank count, around and above the ring
// threshold (in elements of 8 and 4 bytes).
const std::vector<size_t> sizes = {1, 7, 1000, 32771, 100003, 1 << 20};

} // namespace

TEST_CASE("int64 sums are exact on every path, for 2, 3 and 4 ranks") {
  server_fixture f;
  for (int n : {2, 3, 4}) {
    auto results = run_group(f.srv, "i64-" + std::to_string(n), n, [&](tcp_collective& c) {
      for (size_t count : sizes) {
        std::vector<int64_t> v(count);
        for (size_t i = 0; i < count; ++i)
          v[i] = contribution(c.rank(), i);
        if (auto err = c.all_reduce_sum(v.data(), count))
          return describe(err);
        for (size_t i = 0; i < count; ++i) {
          int64_t want = 0;
          for (int r = 0; r < n; ++r)
            want += contribution(r, i);
          if (v[i] != want)
            return "rank " + std::to_string(c.rank()) + ": wrong sum at " + std::to_string(i)
                   + " of " + std::to_string(count);
        }
      }
      return std::string{};
    });
    check_all_passed(results);
  }
}

TEST_CASE("float32 sums: the same bits on every rank, on every run, on every path") {
  server_fixture f;
  for (int n : {2, 3, 4}) {
    std::vector<std::vector<std::vector<float>>> runs; // [run][rank] (the last size only)
    for (int run = 0; run < 2; ++run) {
      std::vector<std::vector<float>> per_rank(static_cast<size_t>(n));
      auto results = run_group(f.srv, "f32-" + std::to_string(n) + "-" + std::to_string(run),
                               n, [&](tcp_collective& c) {
                                 for (size_t count : sizes) {
                                   std::vector<float> v(count);
                                   for (size_t i = 0; i < count; ++i)
                                     v[i] = fcontribution(c.rank(), i);
                                   if (auto err = c.all_reduce_sum_f32(v.data(), count))
                                     return describe(err);
                                   for (size_t i = 0; i < count; i += 997) {
                                     double want = 0;
                                     for (int r = 0; r < n; ++r)
                                       want += fcontribution(r, i);
                                     if (std::fabs(v[i] - want) > 1e-2)
                                       return "rank " + std::to_string(c.rank())
                                              + ": sum off at " + std::to_string(i);
                                   }
                                   if (count == sizes.back() || count == 100003)
                                     per_rank[static_cast<size_t>(c.rank())].insert(
                                       per_rank[static_cast<size_t>(c.rank())].end(),
                                       v.begin(), v.end());
                                 }
                                 return std::string{};
                               });
      check_all_passed(results);
      runs.push_back(per_rank);
    }
    for (int r = 1; r < n; ++r)
      CHECK_MESSAGE(std::memcmp(runs[0][0].data(), runs[0][static_cast<size_t>(r)].data(),
                                runs[0][0].size() * 4)
                      == 0,
                    "rank " << r << " of " << n << " got other bits than rank 0");
    CHECK_MESSAGE(std::memcmp(runs[0][0].data(), runs[1][0].data(), runs[0][0].size() * 4)
                    == 0,
                  "a second run of " << n << " ranks gave other bits");
  }
}

TEST_CASE("all_gather (in place too) and broadcast for 3 ranks") {
  server_fixture f;
  auto results = run_group(f.srv, "gather", 3, [](tcp_collective& c) {
    const size_t bytes = 70001;
    std::vector<char> mine(bytes), out(bytes * 3);
    for (size_t i = 0; i < bytes; ++i)
      mine[i] = static_cast<char>(i * 7 + static_cast<size_t>(c.rank()) * 31);
    if (auto err = c.all_gather(mine.data(), out.data(), bytes))
      return describe(err);
    for (int r = 0; r < 3; ++r)
      for (size_t i = 0; i < bytes; i += 101)
        if (out[static_cast<size_t>(r) * bytes + i]
            != static_cast<char>(i * 7 + static_cast<size_t>(r) * 31))
          return std::string{"all_gather: wrong byte"};
    std::vector<char> in_place(bytes * 3, 0);
    std::memcpy(in_place.data() + bytes * static_cast<size_t>(c.rank()), mine.data(), bytes);
    if (auto err = c.all_gather(in_place.data() + bytes * static_cast<size_t>(c.rank()),
                                in_place.data(), bytes))
      return describe(err);
    if (in_place != out)
      return std::string{"in-place all_gather differs"};
    std::vector<char> b(bytes, static_cast<char>(c.rank()));
    if (auto err = c.broadcast(b.data(), bytes, 2))
      return describe(err);
    for (char x : b)
      if (x != 2)
        return std::string{"broadcast: wrong byte"};
    if (c.broadcast(b.data(), bytes, 3) == caf::none)
      return std::string{"broadcast from rank 3 of 3 accepted"};
    return std::string{};
  });
  check_all_passed(results);
}

TEST_CASE("a group of one answers at once; bad options are refused") {
  server_fixture f;
  auto solo = join(f.srv, "solo", 0, 1);
  REQUIRE(solo);
  std::vector<float> v{1.5F, -2.0F};
  CHECK(!(*solo)->all_reduce_sum_f32(v.data(), v.size()));
  CHECK(v == std::vector<float>{1.5F, -2.0F});
  auto bad = join(f.srv, "bad", 2, 2);
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
}

TEST_CASE("a rank whose peers never show up fails within its deadline, naming them") {
  server_fixture f;
  auto start = clock_type::now();
  auto c = join(f.srv, "lonely", 0, 3, 500ms);
  REQUIRE_FALSE(c);
  CHECK(clock_type::now() - start < 5s);
  CHECK(code_of(c.error()) == errc::timeout);
  CHECK(describe(c.error()).find("rank(s) 1, 2") != std::string::npos);
}

TEST_CASE(
  "a peer that closes its end fails the other's call at once; the group stays broken") {
  server_fixture f;
  auto results = run_group(f.srv, "closing", 2, [&](tcp_collective& c) -> std::string {
    if (c.rank() == 1)
      return ""; // returns and destroys its end: as a closed group or an exited process
    std::vector<int64_t> v(1 << 16, 1);
    auto start = clock_type::now();
    auto err = c.all_reduce_sum(v.data(), v.size());
    if (!err)
      return "the all-reduce without a peer succeeded";
    if (code_of(err) != errc::transport_failed)
      return "expected transport_failed, got " + describe(err);
    if (clock_type::now() - start > 5s)
      return "took longer than 5 s (the deadline is 20 s)";
    if (describe(err).find("rank 1") == std::string::npos)
      return "the error does not name rank 1: " + describe(err);
    if (!c.broken() || !c.all_reduce_sum(v.data(), 1))
      return "a broken group accepted another call";
    return "";
  });
  check_all_passed(results);
}

TEST_CASE("a stuck peer fails the call at the deadline, naming it") {
  server_fixture f;
  std::promise<void> gave_up;
  auto done = gave_up.get_future().share();
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      auto c = join(f.srv, "stuck", r, 2, 400ms);
      if (!c)
        return describe(c.error());
      if (r == 1) {
        done.wait_for(30s); // alive, connected, never calls
        return "";
      }
      std::vector<float> v(100, 1.0F);
      auto start = clock_type::now();
      auto err = (*c)->all_reduce_sum_f32(v.data(), v.size());
      auto took = clock_type::now() - start;
      gave_up.set_value();
      if (!err || code_of(err) != errc::timeout)
        return "expected a timeout";
      if (took < 400ms || took > 5s)
        return "the deadline was not kept";
      if (describe(err).find("rank(s) 1") == std::string::npos)
        return "the error does not name rank 1: " + describe(err);
      return "";
    }));
  for (auto& r : ranks) {
    REQUIRE(r.wait_for(60s) == std::future_status::ready);
    auto text = r.get();
    CHECK_MESSAGE(text.empty(), text);
  }
}

TEST_CASE("a stranger on a rank's port cannot join: it is dropped and the group forms") {
  server_fixture f;
  auto rank0 = std::async(std::launch::async, [&]() { return join(f.srv, "guarded", 0, 2); });
  // The stranger reads rank 0's address and sends a hello with a made-up secret.
  auto store = rendezvous_client::connect(f.srv.address(), 10s);
  REQUIRE(store);
  auto addr = (*store)->get("guarded/tcp/addr/0", 10s);
  REQUIRE(addr);
  std::string text(addr->begin(), addr->end());
  auto port = std::atoi(text.c_str() + text.rfind(':') + 1);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  char junk[72];
  const uint32_t magic = 0x43465854; // the right magic and rank, a made-up secret
  const int32_t rank = 1;
  std::memcpy(junk, &magic, 4);
  std::memcpy(junk + 4, &rank, 4);
  std::memset(junk + 8, 'a', 64);
  REQUIRE(::send(fd, junk, sizeof junk, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof junk));
  char ack = 0;
  CHECK(::recv(fd, &ack, 1, 0) <= 0); // closed without the ack
  ::close(fd);
  auto rank1 = join(f.srv, "guarded", 1, 2);
  REQUIRE_MESSAGE(rank1, describe(rank1.error()));
  REQUIRE(rank0.wait_for(30s) == std::future_status::ready);
  auto c0 = rank0.get();
  REQUIRE_MESSAGE(c0, describe(c0.error()));
  std::vector<int64_t> a{5}, b{7};
  auto other = std::async(std::launch::async,
                          [&] { return (*rank1)->all_reduce_sum(b.data(), 1); });
  CHECK(!(*c0)->all_reduce_sum(a.data(), 1));
  CHECK(!other.get());
  CHECK(a[0] == 12);
  CHECK(b[0] == 12);
}

TEST_CASE("send and recv move 4 KiB and 16 MiB exactly, both directions; bad peers refused") {
  server_fixture f;
  auto results = run_group(f.srv, "p2p", 2, [](tcp_collective& c) -> std::string {
    for (size_t bytes : {size_t{4096}, size_t{16} << 20}) {
      std::vector<char> out(bytes), in(bytes);
      for (size_t i = 0; i < bytes; ++i)
        out[i] = static_cast<char>(i * 13 + static_cast<size_t>(c.rank()));
      // Rank 0 sends first, rank 1 answers: a hand-off each way.
      caf::error err;
      if (c.rank() == 0) {
        err = c.send(out.data(), bytes, 1);
        if (!err)
          err = c.recv(in.data(), bytes, 1);
      } else {
        err = c.recv(in.data(), bytes, 0);
        if (!err)
          err = c.send(out.data(), bytes, 0);
      }
      if (err)
        return describe(err);
      const size_t other = 1 - static_cast<size_t>(c.rank());
      for (size_t i = 0; i < bytes; i += 4093)
        if (in[i] != static_cast<char>(i * 13 + other))
          return "wrong byte at " + std::to_string(i) + " of " + std::to_string(bytes);
    }
    char b = 0;
    if (code_of(c.send(&b, 1, c.rank())) != errc::invalid_argument
        || code_of(c.recv(&b, 1, 2)) != errc::invalid_argument)
      return std::string{"a send to itself or a recv from rank 2 of 2 was accepted"};
    return std::string{};
  });
  check_all_passed(results);
}
