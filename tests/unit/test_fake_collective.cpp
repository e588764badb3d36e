#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.hpp"
#include "transport/fake_collective.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

// Runs fn(rank) on one thread per rank and returns each rank's error.
template <class F>
std::vector<caf::error> on_all_ranks(int n, F fn) {
  std::vector<caf::error> errs(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] { errs[static_cast<size_t>(r)] = fn(r); });
  for (auto& t : threads)
    t.join();
  return errs;
}

} // namespace

TEST_CASE("fake collective sums exactly over many rounds") {
  constexpr int n = 4;
  constexpr int rounds = 50;
  fake_collective_group group{n};
  CHECK(group.endpoint(2).rank() == 2);
  CHECK(group.endpoint(2).size() == n);
  std::vector<std::vector<int64_t>> out(n);
  auto errs = on_all_ranks(n, [&](int r) -> caf::error {
    for (int k = 0; k < rounds; ++k) {
      std::vector<int64_t> buf{r + k, int64_t{1} << 40, -r};
      if (auto err = group.endpoint(r).all_reduce_sum(buf.data(), buf.size()))
        return err;
      out[static_cast<size_t>(r)] = buf;
    }
    return caf::none;
  });
  for (int r = 0; r < n; ++r) {
    CHECK(!errs[static_cast<size_t>(r)]);
    CHECK(
      out[static_cast<size_t>(r)]
      == std::vector<int64_t>{0 + 1 + 2 + 3 + n * (rounds - 1), n * (int64_t{1} << 40), -6});
  }
  CHECK(group.calls() == n * rounds);
}

TEST_CASE("fake collective of one rank returns its input") {
  fake_collective_group group{1};
  std::vector<int64_t> buf{5, -7};
  CHECK(!group.endpoint(0).all_reduce_sum(buf.data(), buf.size()));
  CHECK(buf == std::vector<int64_t>{5, -7});
  CHECK(group.calls() == 1);
}

TEST_CASE("fake collective times out when a rank never arrives") {
  fake_collective_group group{2, 100ms};
  int64_t x = 1;
  auto start = std::chrono::steady_clock::now();
  auto err = group.endpoint(0).all_reduce_sum(&x, 1);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(code_of(err) == errc::timeout);
  CHECK(took >= 100ms);
  CHECK(took < 5s);
  // The straggler finds the round abandoned instead of waiting for nobody.
  CHECK(code_of(group.endpoint(1).all_reduce_sum(&x, 1)) == errc::transport_failed);
}

TEST_CASE("fake collective: fail_next fails whole rounds, then recovers") {
  fake_collective_group group{3};
  group.fail_next(2);
  auto errs = on_all_ranks(3, [&](int r) -> caf::error {
    std::vector<caf::error> seen;
    for (int k = 0; k < 3; ++k) {
      int64_t x = r;
      auto err = group.endpoint(r).all_reduce_sum(&x, 1);
      if (k < 2 && code_of(err) != errc::transport_failed)
        return make_error(errc::method_failed, "round " + std::to_string(k) + " passed");
      if (k == 2 && (err || x != 3))
        return make_error(errc::method_failed, "round 2 failed or summed wrong");
    }
    return caf::none;
  });
  for (auto& err : errs)
    CHECK_MESSAGE(!err, describe(err));
  CHECK(group.calls() == 9);
}

TEST_CASE("fake collective: error_on_collective fails every round while on") {
  fake_collective_group group{1};
  int64_t x = 1;
  group.error_on_collective(true);
  CHECK(code_of(group.endpoint(0).all_reduce_sum(&x, 1)) == errc::transport_failed);
  CHECK(code_of(group.endpoint(0).all_reduce_sum(&x, 1)) == errc::transport_failed);
  group.error_on_collective(false);
  CHECK(!group.endpoint(0).all_reduce_sum(&x, 1));
}

TEST_CASE("fake collective rejects buffers of different lengths") {
  fake_collective_group group{2, 2s};
  auto errs = on_all_ranks(2, [&](int r) {
    std::vector<int64_t> buf(static_cast<size_t>(r + 1), 1);
    return group.endpoint(r).all_reduce_sum(buf.data(), buf.size());
  });
  CHECK(code_of(errs[0]) == errc::transport_failed);
  CHECK(code_of(errs[1]) == errc::transport_failed);
}

TEST_CASE("fake collective: float32 sums in rank order; all_gather and broadcast by default") {
  fake_collective_group g(3);
  std::vector<std::vector<float>> f = {{1e8F, 1.0F}, {1.0F, 2.0F}, {-1e8F, 3.0F}};
  std::vector<std::vector<uint8_t>> all(3, std::vector<uint8_t>(3 * 5));
  std::vector<std::vector<uint8_t>> b(3, std::vector<uint8_t>(5, 0));
  b[1] = {9, 8, 7, 6, 5};
  std::vector<caf::error> errs(3);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r)
    ranks.emplace_back([&, r] {
      auto& c = g.endpoint(r);
      if ((errs[r] = c.all_reduce_sum_f32(f[r].data(), 2)))
        return;
      std::vector<uint8_t> mine(5, static_cast<uint8_t>(10 * r + 1));
      if ((errs[r] = c.all_gather(mine.data(), all[r].data(), 5)))
        return;
      errs[r] = c.broadcast(b[r].data(), 5, 1);
    });
  for (auto& t : ranks)
    t.join();
  for (int r = 0; r < 3; ++r) {
    REQUIRE_MESSAGE(!errs[r], describe(errs[r]));
    // (1e8 + 1) + -1e8 in float is 0: rank order, not the exact sum 1.
    CHECK(f[r][0] == (1e8F + 1.0F) + -1e8F);
    CHECK(f[r][1] == 6.0F);
    for (int p = 0; p < 3; ++p)
      for (int i = 0; i < 5; ++i)
        CHECK(all[r][p * 5 + i] == 10 * p + 1);
    CHECK(b[r] == std::vector<uint8_t>{9, 8, 7, 6, 5});
  }
  CHECK(code_of(g.endpoint(0).broadcast(b[0].data(), 5, 3)) == errc::invalid_argument);
}

TEST_CASE("a group of one: all_gather copies, broadcast only from rank 0") {
  solo_collective solo;
  uint8_t in[3] = {1, 2, 3};
  uint8_t out[3] = {0, 0, 0};
  CHECK_FALSE(solo.all_gather(in, out, 3));
  CHECK(std::memcmp(in, out, 3) == 0);
  CHECK_FALSE(solo.broadcast(in, 3, 0));
  CHECK(code_of(solo.broadcast(in, 3, 1)) == errc::invalid_argument);
  CHECK(std::string(solo.transport()) == "solo");
  float x = 2.5F;
  CHECK_FALSE(solo.all_reduce_sum_f32(&x, 1));
  CHECK(x == 2.5F);
}
