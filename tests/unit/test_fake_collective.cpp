#include <doctest/doctest.h>

#include <chrono>
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
