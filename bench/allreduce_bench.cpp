// TP all-reduce latency and bandwidth on one node: cafex's shared-memory collective and
// Gloo (what same-node TP groups used before), for 2 and 4 ranks and 64 B to 16 MiB of
// float32, beside the floors measured in the same run: a raw shared-memory futex
// ping-pong, a raw loopback TCP round trip and memcpy bandwidth. --busy N starts N
// processes that spin on the CPU for the whole run (the busy-neighbour case).
//
// Ranks are forked processes, as workers are. Every sample is one all-reduce timed on
// rank 0 after a barrier-free warm-up; rank 0 prints the table and, with --json, a JSON
// line. Issue 15's goals: 4 KB between 2 ranks at most 10 us p50, 4 ranks at most 20 us;
// 16 MiB at least 50% of memcpy bandwidth; p99 at most 10x p50 with a busy neighbour.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/flags.hpp"
#include "bench/raw_tcp.hpp"
#include "bench/report.hpp"
#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_server.hpp"
#include "transport/shm_collective.hpp"
#include "transport/shm_futex.hpp"
#include "transport/tcp_collective.hpp"
#include "transport/rendezvous_client.hpp"

using namespace cafex;
using clock_type = std::chrono::steady_clock;

namespace {

double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

size_t iterations_for(size_t bytes, size_t base) {
  if (bytes >= (size_t{4} << 20))
    return std::max<size_t>(10, base / 100);
  if (bytes >= (size_t{256} << 10))
    return std::max<size_t>(20, base / 10);
  return base;
}

/// One rank's schedule over every size: the same calls on every rank; rank 0 keeps the
/// samples (microseconds per call). `registered`: the data lives in the group's
/// registered buffer (collective::registered_buffer), as a model that computes its partial
/// sums there would have it.
std::vector<std::vector<double>> run_sizes(collective& c, const std::vector<size_t>& sizes,
                                           size_t base_iters, bool registered = false) {
  std::vector<std::vector<double>> out;
  for (size_t bytes : sizes) {
    std::vector<float> own(registered ? 0 : bytes / sizeof(float), 1.0F);
    float* data = own.data();
    const size_t count = bytes / sizeof(float);
    if (registered) {
      auto b = c.registered_buffer();
      if (b.bytes < bytes) {
        std::fprintf(stderr, "rank %d: the registered buffer holds %zu bytes, not %zu\n",
                     c.rank(), b.bytes, bytes);
        std::exit(1);
      }
      data = static_cast<float*>(b.data);
      std::fill(data, data + count, 1.0F);
    }
    const size_t iters = iterations_for(bytes, base_iters);
    std::vector<double> samples;
    for (size_t i = 0; i < iters + 10; ++i) {
      auto t0 = clock_type::now();
      if (auto err = c.all_reduce_sum_f32(data, count)) {
        std::fprintf(stderr, "rank %d: %s\n", c.rank(), describe(err).c_str());
        std::exit(1);
      }
      if (i >= 10)
        samples.push_back(us_since(t0));
    }
    out.push_back(std::move(samples));
  }
  return out;
}

/// Forks ranks 1..n-1 running `body(rank)`; runs rank 0 here; reaps them.
template <class Body>
void with_ranks(int n, Body body) {
  std::vector<pid_t> kids;
  for (int r = 1; r < n; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      body(r);
      _exit(0);
    }
    kids.push_back(pid);
  }
  body(0);
  for (auto pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "error: a benchmark rank failed (status %d)\n", status);
      std::exit(1);
    }
  }
}

std::vector<std::vector<double>> bench_shm(int n, const std::vector<size_t>& sizes,
                                           size_t iters, size_t slot_bytes, size_t small_bytes,
                                           bool registered) {
  shm_collective_options o;
  o.slot_bytes = slot_bytes;
  o.small_bytes = small_bytes;
  o.buffer_bytes = registered ? sizes.back() : 0;
  o.name = "/cafex-" + std::to_string(getpid()) + "-tp-bench-" + std::to_string(n);
  o.size = n;
  o.timeout = std::chrono::seconds{60};
  auto first = shm_collective::create(o);
  if (!first) {
    std::fprintf(stderr, "error: %s\n", describe(first.error()).c_str());
    std::exit(1);
  }
  std::vector<std::vector<double>> result;
  with_ranks(n, [&](int r) {
    if (r == 0) {
      if (auto err = (*first)->wait_mapped()) {
        std::fprintf(stderr, "error: %s\n", describe(err).c_str());
        std::exit(1);
      }
      result = run_sizes(**first, sizes, iters, registered);
      return;
    }
    // The child's copy of rank 0's handle stays untouched (ranks leave with _exit): its
    // destructor would close the group and remove the name.
    shm_collective_options co = o;
    co.rank = r;
    auto g = shm_collective::open(co);
    if (!g)
      _exit(3);
    run_sizes(**g, sizes, iters, registered);
  });
  return result;
}

std::vector<std::vector<double>> bench_gloo(int n, const std::vector<size_t>& sizes,
                                            size_t iters, uint16_t port) {
  std::vector<std::vector<double>> result;
  with_ranks(n, [&](int r) {
    gloo_options o;
    o.store = {"127.0.0.1", port};
    o.group = "bench/ar" + std::to_string(n);
    o.rank = r;
    o.size = n;
    o.timeout = std::chrono::seconds{60};
    auto g = make_gloo_collective(o);
    if (!g) {
      std::fprintf(stderr, "rank %d: %s\n", r, describe(g.error()).c_str());
      std::exit(1);
    }
    auto s = run_sizes(**g, sizes, iters);
    if (r == 0)
      result = std::move(s);
  });
  return result;
}

std::vector<std::vector<double>> bench_tcp(int n, const std::vector<size_t>& sizes,
                                           size_t iters, uint16_t port) {
  std::vector<std::vector<double>> result;
  with_ranks(n, [&](int r) {
    auto store = rendezvous_client::connect({"127.0.0.1", port}, std::chrono::seconds{10});
    if (!store) {
      std::fprintf(stderr, "rank %d: %s\n", r, describe(store.error()).c_str());
      std::exit(1);
    }
    tcp_collective_options o;
    o.group = "bench/tcp" + std::to_string(n);
    o.rank = r;
    o.size = n;
    o.timeout = std::chrono::seconds{60};
    auto g = make_tcp_collective(**store, o);
    if (!g) {
      std::fprintf(stderr, "rank %d: %s\n", r, describe(g.error()).c_str());
      std::exit(1);
    }
    auto s = run_sizes(**g, sizes, iters);
    if (r == 0)
      result = std::move(s);
  });
  return result;
}

/// A raw futex ping-pong over shared memory with a 4 KB payload: the floor of any
/// same-node hand-off that sleeps when idle. Answers round-trip samples in us.
std::vector<double> futex_pingpong(size_t iters, size_t payload) {
  struct pp {
    std::atomic<uint32_t> turn;
    char data[2][4096];
  };
  void* mem = mmap(nullptr, sizeof(pp), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                   0);
  auto* p = new (mem) pp{};
  std::vector<char> buf(payload, 1);
  pid_t kid = fork();
  if (kid == 0) {
    for (size_t i = 0; i < iters + 10; ++i) {
      uint32_t want = static_cast<uint32_t>(2 * i + 1);
      while (p->turn.load() != want)
        futex_wait(&p->turn, want - 1, std::chrono::microseconds{100000});
      std::memcpy(buf.data(), p->data[0], payload);
      std::memcpy(p->data[1], buf.data(), payload);
      p->turn.store(want + 1);
      futex_wake(&p->turn);
    }
    _exit(0);
  }
  std::vector<double> samples;
  for (size_t i = 0; i < iters + 10; ++i) {
    auto t0 = clock_type::now();
    uint32_t mine = static_cast<uint32_t>(2 * i);
    std::memcpy(p->data[0], buf.data(), payload);
    p->turn.store(mine + 1);
    futex_wake(&p->turn);
    while (p->turn.load() != mine + 2)
      futex_wait(&p->turn, mine + 1, std::chrono::microseconds{100000});
    std::memcpy(buf.data(), p->data[1], payload);
    if (i >= 10)
      samples.push_back(us_since(t0));
  }
  waitpid(kid, nullptr, 0);
  munmap(mem, sizeof(pp));
  return samples;
}

double memcpy_gbps(size_t bytes) {
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::memcpy(b.data(), a.data(), bytes); // fault the pages in
  std::vector<double> samples;
  for (int i = 0; i < 20; ++i) {
    auto t0 = clock_type::now();
    std::memcpy(b.data(), a.data(), bytes);
    samples.push_back(static_cast<double>(bytes) / (us_since(t0) * 1e3));
  }
  return bench::latency_of(samples).p50; // GB/s, the median
}

std::vector<pid_t> start_busy(int n) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      volatile uint64_t x = 0;
      for (;;)
        x = x + 1;
    }
    pids.push_back(pid);
  }
  return pids;
}

std::string human(size_t bytes) {
  if (bytes >= (size_t{1} << 20))
    return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024)
    return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " B";
}

} // namespace

int main(int argc, char** argv) {
  int busy = 0;
  size_t slot_kib = 256;
  size_t small_kib = shm_collective_options{}.small_bytes >> 10;
  size_t iters = 2000;
  bool json = false;
  bool with_gloo = true;
  cli::arg_parser parser("bench_allreduce", "TP all-reduce on one node: shm and Gloo beside "
                                            "raw futex, raw TCP and memcpy floors");
  parser.flag({{"--busy"}, "N", "processes spinning on the CPU during the run", "0"})
    .flag({{"--iterations"}, "N", "samples per small size (fewer for large ones)", "2000"})
    .flag({{"--slot-kib"}, "N", "the shared-memory slot size per rank (KiB)", "256"})
    .flag({{"--small-kib"},
           "N",
           "shm calls up to N KiB are summed whole by every rank (one barrier), larger "
           "ones in slices",
           std::to_string(small_kib)})
    .flag({{"--no-gloo"}, "", "skip the Gloo rows", ""})
    .flag({{"--json"}, "", "also print the results as one JSON line", ""});
  bench::parse_flags(parser, argc, argv, [&](const cli::parsed_args& a) {
    busy = a.get_int("--busy", 0, 0, 64);
    iters = static_cast<size_t>(a.get_int("--iterations", 2000, 10, 1000000));
    json = a.has("--json");
    slot_kib = static_cast<size_t>(a.get_int("--slot-kib", 256, 4, 1 << 20));
    small_kib = static_cast<size_t>(
      a.get_int("--small-kib", static_cast<int>(small_kib), 0, 1 << 20));
    with_gloo = !a.has("--no-gloo");
  });
  const std::vector<size_t> sizes = {64, 4096, 65536, size_t{1} << 20, size_t{16} << 20};
  // Floors first, while this process has no threads.
  auto tcp = bench::raw_tcp_roundtrip_us(iters, 4096);
  if (!tcp) {
    std::fprintf(stderr, "error: raw TCP: %s\n", describe(tcp.error()).c_str());
    return 1;
  }
  auto busy_pids = start_busy(busy);
  auto futex = bench::latency_of(futex_pingpong(iters, 4096));
  auto tcp_rtt = bench::latency_of(*tcp);
  const double memcpy_bw = memcpy_gbps(size_t{16} << 20);
  nlohmann::json out = {
    {"machine", bench::machine_summary()},
    {"busy_neighbours", busy},
    {"floors",
     {{"futex_pingpong_4k_rtt_us", {{"p50", futex.p50}, {"p99", futex.p99}}},
      {"tcp_loopback_4k_rtt_us", {{"p50", tcp_rtt.p50}, {"p99", tcp_rtt.p99}}},
      {"memcpy_16mib_gbps", memcpy_bw}}},
    {"rows", nlohmann::json::array()}};
  std::printf("# %s, %d busy neighbour(s)\n", bench::machine_summary().c_str(), busy);
  std::printf("# floors: futex ping-pong 4 KB rtt p50 %.1f us p99 %.1f us; loopback TCP 4 KB "
              "rtt p50 %.1f us p99 %.1f us; memcpy 16 MiB %.2f GB/s\n",
              futex.p50, futex.p99, tcp_rtt.p50, tcp_rtt.p99, memcpy_bw);
  std::printf("%-7s %-5s %-8s %10s %10s %10s %s\n", "path", "ranks", "size", "p50 us",
              "p99 us", "GB/s p50", "vs memcpy");
  rendezvous_server srv;
  if (with_gloo)
    if (auto err = srv.start()) {
      std::fprintf(stderr, "error: rendezvous server: %s\n", describe(err).c_str());
      return 1;
    }
  for (int n : {2, 4}) {
    std::vector<std::pair<std::string, std::vector<std::vector<double>>>> paths;
    paths.emplace_back("shm",
                       bench_shm(n, sizes, iters, slot_kib << 10, small_kib << 10, false));
    paths.emplace_back("shm-reg",
                       bench_shm(n, sizes, iters, slot_kib << 10, small_kib << 10, true));
    if (with_gloo) {
      paths.emplace_back("tcp", bench_tcp(n, sizes, iters, srv.port()));
      paths.emplace_back("gloo", bench_gloo(n, sizes, iters / 4 + 10, srv.port()));
    }
    for (auto& [path, per_size] : paths)
      for (size_t i = 0; i < sizes.size(); ++i) {
        auto s = bench::latency_of(per_size[i]);
        double gbps = static_cast<double>(sizes[i]) / (s.p50 * 1e3);
        std::printf("%-7s %-5d %-8s %10.1f %10.1f %10.2f", path.c_str(), n,
                    human(sizes[i]).c_str(), s.p50, s.p99, gbps);
        if (sizes[i] == (size_t{16} << 20))
          std::printf(" %.0f%%", gbps / memcpy_bw * 100);
        std::printf("\n");
        out["rows"].push_back({{"path", path},
                               {"ranks", n},
                               {"bytes", sizes[i]},
                               {"p50_us", s.p50},
                               {"p99_us", s.p99},
                               {"gbps_p50", gbps}});
      }
  }
  for (auto pid : busy_pids) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  if (json)
    std::printf("%s\n", out.dump().c_str());
  return 0;
}
