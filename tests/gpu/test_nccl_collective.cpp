// NCCL groups with one rank per GPU, as threads of one process, meeting through a real
// rendezvous server on 127.0.0.1. No fakes: skipped (not failed) without enough GPUs.
#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "gpu_test_support.hpp"
#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "runtime/error.hpp"
#include "transport/nccl_collective.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_server.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

struct server_fixture {
  rendezvous_server srv;
  server_fixture() { REQUIRE(!srv.start()); }
};

// A group rank: its store client and its communicator (created on GPU `device`).
struct rank_handle {
  std::unique_ptr<rendezvous_client> store;
  std::unique_ptr<nccl_collective> comm;
};

caf::expected<rank_handle>
join(const rendezvous_server& srv, const std::string& group, int rank, int size, int device,
     std::chrono::milliseconds timeout = 60s, std::chrono::milliseconds op_timeout = 60s) {
  auto store = rendezvous_client::connect(srv.address(), 10s);
  if (!store)
    return store.error();
  nccl_options o;
  o.group = group;
  o.rank = rank;
  o.size = size;
  o.device = device;
  o.timeout = timeout;
  o.op_timeout = op_timeout;
  auto comm = make_nccl_collective(**store, o);
  if (!comm)
    return comm.error();
  return rank_handle{std::move(*store), std::move(*comm)};
}

// Crafted so the exact sum is known: large magnitudes, both signs, no two alike.
int64_t contribution(int rank, size_t i) {
  auto r = static_cast<int64_t>(rank);
  auto x = static_cast<int64_t>(i);
  return (r + 1) * 1'000'003 * x - (r * 7 + 3) * (int64_t{1} << 40) + (x % 2 ? -r : r);
}

uint8_t pattern(size_t i, uint32_t seed) {
  return static_cast<uint8_t>((i * 131 + seed * 17 + (i >> 12)) & 0xff);
}

std::string fail_text(const caf::error& err) {
  return describe(err);
}

} // namespace

TEST_CASE("a group of one sums nothing away, on one GPU") {
  CAFEX_REQUIRE_GPUS(1);
  server_fixture f;
  auto h = join(f.srv, "solo", 0, 1, 0);
  REQUIRE_MESSAGE(h, describe(h.error()));
  std::vector<int64_t> v{1, -2, 3};
  REQUIRE(!h->comm->all_reduce_sum(v.data(), v.size()));
  CHECK(v == std::vector<int64_t>{1, -2, 3});
}

TEST_CASE("stream-ordered float32 and bfloat16 sums on one GPU: many enqueues, one wait") {
  CAFEX_REQUIRE_GPUS(1);
  server_fixture f;
  auto h = join(f.srv, "solo-f32", 0, 1, 0);
  REQUIRE_MESSAGE(h, describe(h.error()));
  auto& c = *h->comm;
  const size_t n = 4099; // not a multiple of anything NCCL chunks by
  std::vector<float> in(n);
  for (size_t i = 0; i < n; ++i)
    in[i] = static_cast<float>(i) * 0.37f - 611.0f;
  std::vector<uint16_t> in16(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, &in[i], 4);
    in16[i] = static_cast<uint16_t>(bits >> 16); // truncated to bfloat16
  }
  device_buffer d32, d16;
  cuda_stream s;
  REQUIRE(!d32.reserve(n * 4));
  REQUIRE(!d16.reserve(n * 2));
  REQUIRE(!s.create());
  REQUIRE(!CAFEX_CHECK(cudaMemcpy(d32.data(), in.data(), n * 4, cudaMemcpyHostToDevice)));
  REQUIRE(!CAFEX_CHECK(cudaMemcpy(d16.data(), in16.data(), n * 2, cudaMemcpyHostToDevice)));
  // 64 collectives enqueued back to back return without waiting for each other.
  for (int i = 0; i < 32; ++i) {
    REQUIRE(!c.enqueue_all_reduce_sum_f32(d32.as<float>(), n, s.get()));
    REQUIRE(!c.enqueue_all_reduce_sum_bf16(d16.data(), n, s.get()));
  }
  auto err = c.wait(s.get());
  REQUIRE_MESSAGE(!err, describe(err));
  std::vector<float> out(n);
  std::vector<uint16_t> out16(n);
  REQUIRE(!CAFEX_CHECK(cudaMemcpy(out.data(), d32.data(), n * 4, cudaMemcpyDeviceToHost)));
  REQUIRE(!CAFEX_CHECK(cudaMemcpy(out16.data(), d16.data(), n * 2, cudaMemcpyDeviceToHost)));
  CHECK(std::memcmp(out.data(), in.data(), n * 4) == 0); // a group of one: the identity
  CHECK(out16 == in16);
  CHECK_FALSE(c.broken());
}

TEST_CASE("2 ranks on 2 GPUs: exact int64 all-reduce on device and host buffers, send/recv") {
  CAFEX_REQUIRE_GPUS(2);
  server_fixture f;
  const size_t count = (size_t{1} << 20) + 7; // odd length, 8 MiB
  auto results = test::run_ranks(2, [&](int rank) -> std::string {
    auto h = join(f.srv, "pair", rank, 2, rank);
    if (!h)
      return "rank " + std::to_string(rank) + ": " + fail_text(h.error());
    auto& c = *h->comm;
    if (c.rank() != rank || c.size() != 2 || c.device() != rank)
      return "wrong rank/size/device";
    // Device buffer on the caller's stream.
    std::vector<int64_t> host(count);
    for (size_t i = 0; i < count; ++i)
      host[i] = contribution(rank, i);
    device_buffer buf;
    cuda_stream s;
    if (auto err = buf.reserve(count * 8); err)
      return fail_text(err);
    if (auto err = s.create())
      return fail_text(err);
    if (auto err = CAFEX_CHECK(
          cudaMemcpy(buf.data(), host.data(), count * 8, cudaMemcpyHostToDevice)))
      return fail_text(err);
    if (auto err = c.enqueue_all_reduce_sum(buf.as<int64_t>(), count, s.get()))
      return fail_text(err);
    if (auto err = c.wait(s.get()))
      return fail_text(err);
    std::vector<int64_t> got(count);
    if (auto err = CAFEX_CHECK(
          cudaMemcpy(got.data(), buf.data(), count * 8, cudaMemcpyDeviceToHost)))
      return fail_text(err);
    for (size_t i = 0; i < count; ++i)
      if (got[i] != contribution(0, i) + contribution(1, i))
        return "device all-reduce wrong at " + std::to_string(i);
    // Host buffer through collective::all_reduce_sum, as a CPU caller would use it.
    std::vector<int64_t> small{rank + 1, -(rank + 1) * (int64_t{1} << 50), 7};
    if (auto err = c.all_reduce_sum(small.data(), small.size()))
      return fail_text(err);
    if (small != std::vector<int64_t>{3, -3 * (int64_t{1} << 50), 14})
      return "host all-reduce wrong";
    // PP-style point-to-point: rank 0 sends 3 MiB + 5 bytes to rank 1, then back.
    const size_t bytes = (size_t{3} << 20) + 5;
    device_buffer p2p;
    if (auto err = p2p.reserve(bytes))
      return fail_text(err);
    std::vector<uint8_t> data(bytes);
    for (int round = 0; round < 2; ++round) {
      const int sender = round;
      if (rank == sender) {
        for (size_t i = 0; i < bytes; ++i)
          data[i] = pattern(i, static_cast<uint32_t>(round));
        if (auto err = CAFEX_CHECK(
              cudaMemcpy(p2p.data(), data.data(), bytes, cudaMemcpyHostToDevice)))
          return fail_text(err);
        if (auto err = c.send(p2p.data(), bytes, 1 - rank))
          return fail_text(err);
      } else {
        if (auto err = CAFEX_CHECK(cudaMemset(p2p.data(), 0, bytes)))
          return fail_text(err);
        if (auto err = c.recv(p2p.data(), bytes, 1 - rank))
          return fail_text(err);
        if (auto err = CAFEX_CHECK(
              cudaMemcpy(data.data(), p2p.data(), bytes, cudaMemcpyDeviceToHost)))
          return fail_text(err);
        for (size_t i = 0; i < bytes; ++i)
          if (data[i] != pattern(i, static_cast<uint32_t>(round)))
            return "recv wrong at byte " + std::to_string(i);
      }
    }
    if (!c.enqueue_send(p2p.data(), 1, rank, s.get())) // to itself
      return "sending to itself was accepted";
    return "";
  });
  test::check_all_passed(results);
}

TEST_CASE("a missing peer fails initialisation within the deadline, with the group named") {
  CAFEX_REQUIRE_GPUS(1);
  server_fixture f;
  SUBCASE("rank 1 waits for a rank 0 that never publishes the unique id") {
    auto start = clock_type::now();
    auto h = join(f.srv, "lonely-1", 1, 2, 0, 1500ms);
    auto took = clock_type::now() - start;
    REQUIRE(!h);
    CHECK_MESSAGE(code_of(h.error()) == errc::timeout, describe(h.error()));
    CHECK(describe(h.error()).find("lonely-1") != std::string::npos);
    CHECK(took < 10s);
  }
  SUBCASE("rank 0 publishes, nobody joins: the nonblocking init is aborted") {
    auto start = clock_type::now();
    auto h = join(f.srv, "lonely-0", 0, 2, 0, 3000ms);
    auto took = clock_type::now() - start;
    REQUIRE(!h);
    CHECK_MESSAGE(code_of(h.error()) == errc::timeout, describe(h.error()));
    auto text = describe(h.error());
    CHECK(text.find("lonely-0") != std::string::npos);
    CHECK(text.find("rank 0/2") != std::string::npos);
    CHECK(took < 15s);
  }
}

TEST_CASE("a peer that never joins the collective: the waiting rank aborts, no hang") {
  CAFEX_REQUIRE_GPUS(2);
  server_fixture f;
  // Rank 1 forms the group and then "dies" (never calls the collective) until rank 0
  // has given up; rank 0 must see a timeout, abort its communicator and stay broken.
  std::promise<void> rank0_done;
  auto done = rank0_done.get_future().share();
  auto results = test::run_ranks(2, [&](int rank) -> std::string {
    auto h = join(f.srv, "dying", rank, 2, rank, 60s, 2000ms);
    if (!h)
      return fail_text(h.error());
    auto& c = *h->comm;
    if (rank == 1) {
      done.wait_for(60s);
      c.abort(); // the "dead" rank's communicator goes away too
      return "";
    }
    device_buffer buf;
    cuda_stream s;
    if (auto err = buf.reserve(1024 * 8))
      return fail_text(err);
    if (auto err = s.create())
      return fail_text(err);
    auto start = clock_type::now();
    auto err = c.enqueue_all_reduce_sum(buf.as<int64_t>(), 1024, s.get());
    if (!err)
      err = c.wait(s.get());
    auto took = clock_type::now() - start;
    rank0_done.set_value();
    if (!err)
      return "the all-reduce without a peer succeeded";
    if (code_of(err) != errc::timeout)
      return "expected a timeout, got " + describe(err);
    if (!c.broken())
      return "the group is not marked broken";
    if (took > 20s)
      return "the abort took too long";
    if (!c.all_reduce_sum(nullptr, 1))
      return "a broken group accepted another call";
    // The aborted NCCL kernel must not keep the stream busy forever.
    if (auto e = wait_stream(s.get(), 20s, "the aborted stream"))
      return "stream still busy after abort: " + describe(e);
    return "";
  });
  test::check_all_passed(results);
}
