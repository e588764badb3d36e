// The direct lane allocates nothing per step on the caller's thread beyond the result it
// hands back: a counting operator new, armed only around the call on this thread,
// compares a step's allocations with those of decoding the same result from its bytes.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"
#include "transport/shm_messages.hpp"

namespace {

thread_local bool counting = false;
thread_local long allocations = 0;

} // namespace

namespace {

void* counted_malloc(std::size_t n) {
  if (counting)
    ++allocations;
  return std::malloc(n == 0 ? 1 : n);
}

} // namespace

// Every non-aligned form, so that each new meets its own delete (ASan checks the pairs).
void* operator new(std::size_t n) {
  if (void* p = counted_malloc(n))
    return p;
  throw std::bad_alloc{};
}

void* operator new[](std::size_t n) {
  if (void* p = counted_malloc(n))
    return p;
  throw std::bad_alloc{};
}

void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_malloc(n);
}

void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_malloc(n);
}

void operator delete(void* p) noexcept {
  std::free(p);
}

void operator delete[](void* p) noexcept {
  std::free(p);
}

void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

using namespace cafex;

namespace {

template <class F>
long allocations_of(F&& f) {
  allocations = 0;
  counting = true;
  f();
  counting = false;
  return allocations;
}

scheduler_output decode_step(uint64_t id, int32_t token) {
  scheduler_output s;
  s.step_id = id;
  if (id == 0)
    s.new_requests.push_back(new_request{"r", {1, 2, 3, 4}});
  else
    s.cached_requests.push_back(cached_request{"r", token});
  return s;
}

} // namespace

TEST_CASE("a direct step allocates on the caller's thread only what its result holds") {
  test::become_subreaper();
  auto o = test::test_options(1, 2);
  o.model.num_layers = 0;
  auto ex = test::start_or_fail(o);
  int32_t token = 0;
  for (uint64_t id = 0; id < 20; ++id) { // compiles, then warms the lane's buffers
    auto r = ex->execute_model(decode_step(id, token));
    REQUIRE_MESSAGE(r, describe(r.error()));
    token = r->sampled.at(0);
  }
  auto step = decode_step(20, token);
  caf::expected<model_runner_output> r{caf::error{}};
  auto lane = allocations_of([&] { r = ex->execute_model(step); });
  REQUIRE_MESSAGE(r, describe(r.error()));
  auto stats = ex->dataflow_stats();
  REQUIRE(stats);
  CHECK((*stats)["direct_steps"].get<uint64_t>() == 20); // all but the first
  // What the result costs: the same output decoded from the report's bytes, as the lane
  // does it (one report message, its vectors filled by CAF's deserializer).
  std::vector<char> bytes;
  auto ring = shm_ring::create("/cafex-alloc-test-" + std::to_string(getpid()), 1 << 16);
  REQUIRE(ring);
  (*ring)->unlink();
  REQUIRE_FALSE(write_report(**ring, nullptr, 1, 0, report_kind::result, &*r, nullptr,
                             std::chrono::milliseconds{100}));
  REQUIRE((*ring)->try_read(bytes));
  long result = allocations_of([&] {
    auto m = read_report(bytes);
    REQUIRE(m);
  });
  MESSAGE("allocations on the caller's thread: " << lane << " for a direct step, " << result
                                                 << " for decoding its result");
  CHECK(lane <= result);
}
