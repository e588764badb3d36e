// The same-node shared-memory collective: sums that are exact (int64) and bit-identical
// across ranks and runs (float32, rank order), every size path (small, sliced, chunked),
// lengths that are not a multiple of the rank count, all_gather and broadcast, a group of
// one, a rank that closes its end or dies in the middle of a call, and no segment left.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <random>
#include <sys/wait.h>
#include <thread>
#include <utility>
#include <unistd.h>
#include <vector>

#include "runtime/error.hpp"
#include "transport/shm_collective.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

std::string unique_name(const char* what) {
  static int n = 0;
  return "/cafex-test-" + std::to_string(getpid()) + "-" + what + "-" + std::to_string(n++);
}

bool segment_exists(const std::string& name) {
  return std::filesystem::exists("/dev/shm" + name);
}

/// A group of `size` ranks in this process (one mapping each); rank 0 created it.
struct group {
  std::vector<std::unique_ptr<shm_collective>> ranks;
  std::string name;

  explicit group(int size, size_t slot_bytes = size_t{1} << 20,
                 std::chrono::milliseconds timeout = 10s, size_t small_bytes = 32 << 10,
                 size_t buffer_bytes = 0) {
    name = unique_name("g");
    shm_collective_options o;
    o.name = name;
    o.size = size;
    o.slot_bytes = slot_bytes;
    o.timeout = timeout;
    o.small_bytes = small_bytes;
    o.buffer_bytes = buffer_bytes;
    auto first = shm_collective::create(o);
    REQUIRE_MESSAGE(first, describe(first.error()));
    ranks.push_back(std::move(*first));
    for (int r = 1; r < size; ++r) {
      o.rank = r;
      auto g = shm_collective::open(o);
      REQUIRE_MESSAGE(g, describe(g.error()));
      ranks.push_back(std::move(*g));
    }
    REQUIRE_FALSE(ranks[0]->wait_mapped());
    CHECK_FALSE(segment_exists(name)); // removed once everyone mapped it
  }

  /// Runs `f(rank)` on one thread per rank; answers each rank's error.
  template <class F>
  std::vector<caf::error> each(F f) {
    std::vector<caf::error> errs(ranks.size());
    std::vector<std::thread> threads;
    for (size_t r = 0; r < ranks.size(); ++r)
      threads.emplace_back([&, r] { errs[r] = f(static_cast<int>(r), *ranks[r]); });
    for (auto& t : threads)
      t.join();
    return errs;
  }
};

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-1000.0F, 1000.0F);
  std::vector<float> v(n);
  for (auto& x : v)
    x = d(gen);
  return v;
}

} // namespace

TEST_CASE("int64 sums are exact on every path, for 2, 3 and 4 ranks") {
  for (int size : {2, 3, 4}) {
    // Slots of 4 KiB: 8 elements take the small path, 1000 the sliced one (with a last
    // slice shorter than the others), 5000 are chunked.
    group g(size, 4096);
    for (size_t n : {size_t{1}, size_t{8}, size_t{1000}, size_t{5000}}) {
      std::vector<std::vector<int64_t>> bufs(static_cast<size_t>(size));
      for (int r = 0; r < size; ++r)
        for (size_t i = 0; i < n; ++i)
          bufs[static_cast<size_t>(r)].push_back(static_cast<int64_t>(i) * (r + 1) - 7 * r);
      auto errs = g.each([&](int r, shm_collective& c) {
        return c.all_reduce_sum(bufs[static_cast<size_t>(r)].data(), n);
      });
      for (auto& e : errs)
        REQUIRE_MESSAGE(!e, describe(e));
      const int64_t weights = size * (size + 1) / 2;
      for (int r = 0; r < size; ++r)
        for (size_t i = 0; i < n; ++i)
          REQUIRE(bufs[static_cast<size_t>(r)][i]
                  == static_cast<int64_t>(i) * weights - 7 * size * (size - 1) / 2);
    }
  }
}

TEST_CASE("float32 sums: the same bits on every rank, on every run, on every path") {
  const int size = 4;
  // 999 elements: small path with 64 KiB slots; the sliced path with 1 KiB of small_bytes.
  // 40001: chunked, and each slice summed in several blocks with a short last one.
  for (auto [n, small] :
       {std::pair{size_t{999}, size_t{32} << 10}, std::pair{size_t{999}, size_t{1024}},
        std::pair{size_t{40001}, size_t{32} << 10}}) {
    std::vector<uint32_t> first_bits;
    for (int run = 0; run < 3; ++run) {
      group g(size, 65536, 10s, small);
      std::vector<std::vector<float>> bufs;
      for (int r = 0; r < size; ++r)
        bufs.push_back(random_floats(n, static_cast<unsigned>(r + 1)));
      // The expected sum, in rank order.
      std::vector<float> want = bufs[0];
      for (int r = 1; r < size; ++r)
        for (size_t i = 0; i < want.size(); ++i)
          want[i] += bufs[static_cast<size_t>(r)][i];
      auto errs = g.each([&](int r, shm_collective& c) {
        return c.all_reduce_sum_f32(bufs[static_cast<size_t>(r)].data(), n);
      });
      for (auto& e : errs)
        REQUIRE_MESSAGE(!e, describe(e));
      for (int r = 0; r < size; ++r)
        REQUIRE(std::memcmp(bufs[static_cast<size_t>(r)].data(), want.data(),
                            want.size() * sizeof(float))
                == 0);
      std::vector<uint32_t> bits(want.size());
      std::memcpy(bits.data(), want.data(), bits.size() * sizeof(float));
      if (run == 0)
        first_bits = bits;
      CHECK(bits == first_bits);
    }
  }
}

TEST_CASE("sums over the registered buffers: the bits of the slot path, for 2, 3 and 4 "
          "ranks") {
  for (int size : {2, 3, 4}) {
    // 40001 floats (160 KB) in 256 KiB buffers with 64 KiB slots: the slot path chunks
    // them, the registered path sums them in place; 1000 floats take the slot path either
    // way (below small_bytes), also when they live in the registered buffer.
    group g(size, 65536, 10s, 32 << 10, 256 << 10);
    for (size_t n : {size_t{40001}, size_t{1000}, size_t{17}}) {
      std::vector<std::vector<float>> inputs, own;
      for (int r = 0; r < size; ++r)
        inputs.push_back(random_floats(n, static_cast<unsigned>(7 * r + n)));
      own = inputs;
      auto errs = g.each([&](int r, shm_collective& c) {
        return c.all_reduce_sum_f32(own[static_cast<size_t>(r)].data(), n);
      });
      for (auto& e : errs)
        REQUIRE_MESSAGE(!e, describe(e));
      errs = g.each([&](int r, shm_collective& c) {
        auto b = c.registered_buffer();
        REQUIRE(b.data != nullptr);
        REQUIRE(b.bytes == size_t{256} << 10);
        auto* data = static_cast<float*>(b.data);
        std::copy(inputs[static_cast<size_t>(r)].begin(), inputs[static_cast<size_t>(r)].end(),
                  data);
        return c.all_reduce_sum_f32(data, n);
      });
      for (auto& e : errs)
        REQUIRE_MESSAGE(!e, describe(e));
      for (int r = 0; r < size; ++r) {
        const auto* got = static_cast<const float*>(
          g.ranks[static_cast<size_t>(r)]->registered_buffer().data);
        CHECK(std::memcmp(got, own[0].data(), n * sizeof(float)) == 0);
        CHECK(std::memcmp(own[static_cast<size_t>(r)].data(), own[0].data(), n * sizeof(float))
              == 0);
      }
    }
    // int64 over the registered buffer is exact.
    const size_t n = 30000;
    auto errs = g.each([&](int r, shm_collective& c) {
      auto* data = static_cast<int64_t*>(c.registered_buffer().data);
      for (size_t i = 0; i < n; ++i)
        data[i] = static_cast<int64_t>(i) * (r + 1);
      return c.all_reduce_sum(data, n);
    });
    for (auto& e : errs)
      REQUIRE_MESSAGE(!e, describe(e));
    for (auto& rank : g.ranks) {
      const auto* data = static_cast<const int64_t*>(rank->registered_buffer().data);
      for (size_t i = 0; i < n; i += 997)
        REQUIRE(data[i] == static_cast<int64_t>(i) * size * (size + 1) / 2);
    }
  }
}

TEST_CASE("registered buffers: none by default, too long a call refused, ranks that "
          "disagree on the kind of buffer fail") {
  group plain(2);
  CHECK(plain.ranks[0]->registered_buffer().data == nullptr);
  CHECK(plain.ranks[0]->registered_buffer().bytes == 0);

  group g(2, 65536, 2s, 32 << 10, 64 << 10);
  auto* data = static_cast<float*>(g.ranks[0]->registered_buffer().data);
  auto err = g.ranks[0]->all_reduce_sum_f32(data, (64 << 10) / sizeof(float) + 1);
  CHECK(code_of(err) == errc::invalid_argument);
  CHECK(describe(err).find("registered buffer") != std::string::npos);
  CHECK_FALSE(g.ranks[0]->broken()); // nothing was published: the group goes on

  // Rank 0 passes its registered buffer, rank 1 its own memory, to the same large call.
  std::vector<float> mine(10000, 1.0F);
  auto errs = g.each([&](int r, shm_collective& c) {
    float* p = r == 0 ? static_cast<float*>(c.registered_buffer().data) : mine.data();
    return c.all_reduce_sum_f32(p, mine.size());
  });
  for (auto& e : errs) {
    REQUIRE(e);
    CHECK(code_of(e) == errc::transport_failed);
  }
  CHECK(describe(errs[0]).find("its own memory") != std::string::npos);
  CHECK(describe(errs[1]).find("its registered buffer") != std::string::npos);
}

TEST_CASE("all_gather and broadcast, chunked, with the input in place") {
  group g(3, 4096);
  const size_t bytes = 10000; // three chunks of a 4 KiB slot
  std::vector<std::vector<char>> outs(3, std::vector<char>(3 * bytes));
  std::vector<std::vector<char>> ins(3);
  for (int r = 0; r < 3; ++r)
    for (size_t i = 0; i < bytes; ++i)
      ins[static_cast<size_t>(r)].push_back(static_cast<char>((i * 7 + r * 31) & 0x7f));
  auto errs = g.each([&](int r, shm_collective& c) {
    auto& out = outs[static_cast<size_t>(r)];
    if (r == 1) { // in place: the input already sits at this rank's offset
      std::memcpy(out.data() + bytes, ins[1].data(), bytes);
      return c.all_gather(out.data() + bytes, out.data(), bytes);
    }
    return c.all_gather(ins[static_cast<size_t>(r)].data(), out.data(), bytes);
  });
  for (auto& e : errs)
    REQUIRE_MESSAGE(!e, describe(e));
  for (int r = 0; r < 3; ++r)
    for (int p = 0; p < 3; ++p)
      REQUIRE(std::memcmp(outs[static_cast<size_t>(r)].data() + bytes * static_cast<size_t>(p),
                          ins[static_cast<size_t>(p)].data(), bytes)
              == 0);
  std::vector<std::vector<char>> bufs(3, std::vector<char>(bytes, 0));
  bufs[2] = ins[2];
  errs = g.each([&](int r, shm_collective& c) {
    return c.broadcast(bufs[static_cast<size_t>(r)].data(), bytes, 2);
  });
  for (auto& e : errs)
    REQUIRE_MESSAGE(!e, describe(e));
  for (int r = 0; r < 3; ++r)
    CHECK(bufs[static_cast<size_t>(r)] == ins[2]);
  char c = 0;
  auto bad = g.ranks[0]->broadcast(&c, 1, 3);
  CHECK(code_of(bad) == errc::invalid_argument);
}

TEST_CASE("a group of one answers at once") {
  group g(1);
  int64_t x = 41;
  CHECK_FALSE(g.ranks[0]->all_reduce_sum(&x, 1));
  CHECK(x == 41);
  float f = 1.5F;
  CHECK_FALSE(g.ranks[0]->all_reduce_sum_f32(&f, 1));
  CHECK(f == 1.5F);
}

TEST_CASE("a rank that closes its end fails its peer's call at once") {
  group g(2);
  caf::error err;
  auto t0 = std::chrono::steady_clock::now();
  std::thread waiter([&] {
    int64_t x = 1;
    err = g.ranks[0]->all_reduce_sum(&x, 1);
  });
  std::this_thread::sleep_for(50ms); // not synchronisation: the waiter may sleep or not
  g.ranks[1].reset();
  waiter.join();
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(err);
  CHECK(code_of(err) == errc::transport_failed);
  CHECK(describe(err).find("closed the group") != std::string::npos);
  CHECK(took < 5s);
  // Broken from now on.
  int64_t y = 1;
  CHECK(code_of(g.ranks[0]->all_reduce_sum(&y, 1)) == errc::transport_failed);
}

TEST_CASE("a peer killed in the middle of a collective fails the others within the bound") {
  shm_collective_options o;
  o.name = unique_name("kill");
  o.size = 2;
  o.timeout = 30s; // the deadline is not what ends the wait
  auto mine = shm_collective::create(o);
  REQUIRE(mine);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    shm_collective_options co = o;
    co.rank = 1;
    auto peer = shm_collective::open(co);
    if (!peer)
      _exit(3);
    // Joins one all-reduce, then hangs in none: it is killed while rank 0 waits in the
    // second one.
    int64_t x = 2;
    if ((*peer)->all_reduce_sum(&x, 1))
      _exit(4);
    pause();
    _exit(0);
  }
  REQUIRE_FALSE((*mine)->wait_mapped());
  int64_t x = 1;
  REQUIRE_FALSE((*mine)->all_reduce_sum(&x, 1));
  CHECK(x == 3);
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    kill(child, SIGKILL);
  });
  auto t0 = std::chrono::steady_clock::now();
  auto err = (*mine)->all_reduce_sum(&x, 1);
  auto took = std::chrono::steady_clock::now() - t0;
  killer.join();
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(err);
  CHECK(code_of(err) == errc::transport_failed);
  CHECK(describe(err).find("died") != std::string::npos);
  CHECK(took < 3s);
  CHECK_FALSE(segment_exists(o.name));
}

TEST_CASE("a timeout names the group; bad shapes are refused") {
  group g(2, size_t{1} << 20, 200ms);
  int64_t x = 1;
  auto err = g.ranks[0]->all_reduce_sum(&x, 1); // rank 1 never comes
  CHECK(code_of(err) == errc::timeout);
  CHECK(describe(err).find(g.name) != std::string::npos);
  shm_collective_options o;
  o.name = unique_name("bad");
  o.size = 9;
  CHECK(code_of(shm_collective::create(o).error()) == errc::invalid_argument);
  o.size = 2;
  o.name = "no-slash";
  CHECK(code_of(shm_collective::create(o).error()) == errc::invalid_argument);
  o.name = unique_name("missing");
  o.rank = 1;
  auto none = shm_collective::open(o);
  REQUIRE_FALSE(none);
  CHECK(describe(none.error()).find("rank 0") != std::string::npos);
}

TEST_CASE("what a creator that died before its peers mapped the segment left is removed") {
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    shm_collective_options o;
    o.name = shm_collective_name(static_cast<int>(getpid()), "tp0/g2");
    o.size = 2;
    auto g = shm_collective::create(o);
    _exit(g ? 0 : 3); // no destructor: the name stays, as after a SIGKILL
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  const auto name = shm_collective_name(child, "tp0/g2");
  CHECK(name == "/cafex-" + std::to_string(child) + "-tp-tp0-g2");
  REQUIRE(segment_exists(name));
  CHECK(remove_shm_collectives_of(child) == 1);
  CHECK_FALSE(segment_exists(name));
  CHECK(remove_shm_collectives_of(child) == 0);
}
