// Gloo point-to-point bandwidth between two processes (fork, rendezvous through a
// rendezvous_server) beside raw loopback TCP measured in the same run. The goal:
// Gloo at 16 MiB reaches at least 80% of raw TCP.
//
// Each sample is "send N bytes, then receive an 8-byte ack" on both transports, so both
// include the same one-way transfer plus one small return message.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/raw_tcp.hpp"
#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_server.hpp"

using namespace cafex;
using clock_type = std::chrono::steady_clock;

namespace {

struct size_case {
  size_t mib;
  size_t reps; // per round
};

// Rounds interleave raw TCP and Gloo samples so both see the same (shared, noisy)
// machine; medians over all rounds are reported.
const std::vector<size_case> cases = {{1, 10}, {16, 4}, {64, 2}};
constexpr size_t rounds = 5;
constexpr size_t latency_iters = 2000;

struct samples {
  std::vector<double> tcp_rtt_us, gloo_rtt_us;
  std::vector<std::vector<double>> tcp_gbps, tcp_big_gbps, gloo_gbps; // per case
};

// Raw TCP twice: with the kernel's send-buffer autotuning, and with a fixed large
// SO_SNDBUF as Gloo sets it (min(message, 32 MiB), capped by net.core.wmem_max), to
// tell a Gloo overhead from a socket-buffer effect.
struct tcp_peers {
  bench::raw_tcp_peer* autotuned = nullptr;
  bench::raw_tcp_peer* big_sndbuf = nullptr;
};

void append(std::vector<double>& to, const std::vector<double>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// Both ranks run the same schedule; rank 0 times it and, between Gloo phases, takes
// raw TCP samples through `tcp` while rank 1 waits in its next recv.
caf::error run_rank(int rank, uint16_t port, tcp_peers tcp, samples* out) {
  gloo_options o;
  o.store = {"127.0.0.1", port};
  o.group = "bench/p2p";
  o.rank = rank;
  o.size = 2;
  o.timeout = std::chrono::seconds(60);
  auto c = make_gloo_collective(o);
  if (!c)
    return c.error();
  auto& g = **c;
  int peer = 1 - rank;
  uint32_t tag = 0;
  // One step: rank 0 sends `bytes` and waits for a reply of `reply` bytes; rank 1
  // mirrors. Returns seconds on rank 0.
  auto step = [&](std::vector<char>& buf, std::vector<char>& back) -> caf::expected<double> {
    ++tag;
    auto t0 = clock_type::now();
    if (rank == 0) {
      if (auto err = g.send(buf.data(), buf.size(), peer, tag))
        return err;
      if (auto err = g.recv(back.data(), back.size(), peer, tag))
        return err;
    } else {
      if (auto err = g.recv(buf.data(), buf.size(), peer, tag))
        return err;
      if (auto err = g.send(back.data(), back.size(), peer, tag))
        return err;
    }
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  };
  std::vector<char> small(64, 's'), small_back(64, 's'), ack(8, 'a');
  if (out) {
    out->tcp_gbps.resize(cases.size());
    out->tcp_big_gbps.resize(cases.size());
    out->gloo_gbps.resize(cases.size());
  }
  for (size_t r = 0; r < rounds; ++r) {
    if (tcp.autotuned) {
      auto s = tcp.autotuned->roundtrip_us(latency_iters / rounds, 64, 20);
      if (!s)
        return s.error();
      append(out->tcp_rtt_us, *s);
    }
    for (size_t i = 0; i < 20 + latency_iters / rounds; ++i) {
      auto s = step(small, small_back);
      if (!s)
        return s.error();
      if (out && i >= 20)
        out->gloo_rtt_us.push_back(*s * 1e6);
    }
    for (size_t k = 0; k < cases.size(); ++k) {
      auto bytes = cases[k].mib << 20;
      if (tcp.autotuned) {
        auto s = tcp.autotuned->bandwidth_gbps(bytes, cases[k].reps, 1);
        if (!s)
          return s.error();
        append(out->tcp_gbps[k], *s);
        s = tcp.big_sndbuf->bandwidth_gbps(bytes, cases[k].reps, 1);
        if (!s)
          return s.error();
        append(out->tcp_big_gbps[k], *s);
      }
      std::vector<char> buf(bytes, 'x');
      for (size_t i = 0; i < cases[k].reps + 1; ++i) { // +1 warm-up
        auto s = step(buf, ack);
        if (!s)
          return s.error();
        if (out && i > 0)
          out->gloo_gbps[k].push_back(static_cast<double>(bytes) / *s / 1e9);
      }
    }
  }
  return caf::none;
}

int fail(const std::string& what, const caf::error& err) {
  std::fprintf(stderr, "bench_gloo_bandwidth: %s: %s\n", what.c_str(), describe(err).c_str());
  return 1;
}

} // namespace

int main() {
  // The raw TCP children first, while this process has no threads to fork under.
  auto tcp = bench::raw_tcp_peer::start();
  auto tcp_big = bench::raw_tcp_peer::start();
  if (!tcp || !tcp_big)
    return fail("raw tcp peer", tcp ? tcp_big.error() : tcp.error());
  auto granted = (*tcp_big)->set_send_buffer(size_t{32} << 20);
  if (!granted)
    return fail("raw tcp SO_SNDBUF", granted.error());
  // Gloo rank 1 next, for the same reason; it learns the server's port by pipe.
  int pipefd[2];
  if (::pipe(pipefd) != 0)
    return fail("pipe", make_error(errc::transport_failed, std::to_string(errno)));
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[1]);
    uint16_t port = 0;
    pollfd pfd{pipefd[0], POLLIN, 0};
    if (::poll(&pfd, 1, 10000) != 1 || ::read(pipefd[0], &port, sizeof(port)) != sizeof(port))
      ::_exit(3);
    auto err = run_rank(1, port, tcp_peers{}, nullptr);
    if (err)
      std::fprintf(stderr, "rank 1: %s\n", describe(err).c_str());
    ::_exit(err ? 1 : 0);
  }
  ::close(pipefd[0]);
  rendezvous_server srv;
  if (auto err = srv.start())
    return fail("rendezvous server", err);
  auto port = srv.port();
  if (::write(pipefd[1], &port, sizeof(port)) != sizeof(port))
    return fail("pipe write", make_error(errc::transport_failed, std::to_string(errno)));
  ::close(pipefd[1]);
  samples res;
  auto err = run_rank(0, port, tcp_peers{tcp->get(), tcp_big->get()}, &res);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (err)
    return fail("gloo rank 0", err);
  auto tr = bench::summarize(res.tcp_rtt_us);
  auto gr = bench::summarize(res.gloo_rtt_us);
  // The load says how much to trust the medians: on a shared 2-core box other jobs
  // delay Gloo's extra thread wake-ups far more than raw TCP's.
  char load[64] = "?";
  if (auto f = std::fopen("/proc/loadavg", "r")) {
    if (!std::fgets(load, sizeof(load), f))
      load[0] = '\0';
    std::fclose(f);
  }
  std::printf("%zu rounds, raw TCP and Gloo interleaved in each; loadavg %s", rounds, load);
  std::printf("round trip 64 B (us)   p50     p99\n");
  std::printf("  raw tcp            %6.1f  %6.1f\n", tr.p50, tr.p99);
  std::printf("  gloo send+recv     %6.1f  %6.1f\n\n", gr.p50, gr.p99);
  std::printf("GB/s as p50 / best; tcp+sndbuf = raw TCP with SO_SNDBUF %zu MiB "
              "(what Gloo sets)\n",
              *granted >> 20);
  std::printf("  MiB  samples  gloo          tcp           tcp+sndbuf    gloo/tcp  "
              "gloo/tcp+sndbuf\n");
  for (size_t i = 0; i < cases.size(); ++i) {
    auto g = bench::summarize(res.gloo_gbps[i]);
    auto t = bench::summarize(res.tcp_gbps[i]);
    auto b = bench::summarize(res.tcp_big_gbps[i]);
    std::printf(
      "  %3zu  %7zu  %4.2f / %4.2f   %4.2f / %4.2f   %4.2f / %4.2f   %6.0f%%  %8.0f%%\n",
      cases[i].mib, res.gloo_gbps[i].size(), g.p50, g.max, t.p50, t.max, b.p50, b.max,
      100.0 * g.p50 / t.p50, 100.0 * g.p50 / b.p50);
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
