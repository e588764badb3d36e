// bench_gloo_bandwidth: cafex's Gloo point-to-point channel (transport/gloo_collective:
// Gloo TCP, unbound-buffer send/recv, rendezvous through cafex's rendezvous server)
// between two processes on 127.0.0.1, beside a raw loopback TCP bulk transfer measured in
// the same run, just before each size.
//
//   bench_gloo_bandwidth [--sizes-mib 1,16,64] [--reps N] [--json]
//
// One transfer = rank 0 sends SIZE bytes, rank 1 receives them and answers one byte;
// the time runs from the start of the send to the answer (the raw TCP case does the same).
// Each size runs one untimed transfer, then --reps timed ones (default: 40 at 1 MiB down to
// 5 at 64 MiB); the table shows the median GB/s (1e9 bytes per second).
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/raw_tcp.hpp"
#include "runtime/error.hpp"
#include "transport/gloo_collective.hpp"
#include "transport/rendezvous_server.hpp"

using namespace cafex;
using namespace cafex::bench;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr uint32_t data_tag = 1;
constexpr uint32_t ack_tag = 2;

int reps_for(size_t bytes, int given) {
  if (given > 0)
    return given;
  auto r = static_cast<int>((size_t{64} << 20) * 5 / bytes);
  return std::clamp(r, 5, 40);
}

gloo_options options(uint16_t port, int rank) {
  gloo_options o;
  o.store.host = "127.0.0.1";
  o.store.port = port;
  o.group = "bench";
  o.rank = rank;
  o.size = 2;
  o.timeout = std::chrono::seconds(60);
  return o;
}

// Rank 1, in the forked child: receive each transfer and acknowledge it.
int run_receiver(int port_fd, const std::vector<size_t>& sizes, int given_reps) {
  uint16_t port = 0;
  if (read(port_fd, &port, sizeof(port)) != sizeof(port))
    return 1;
  auto c = make_gloo_collective(options(port, 1));
  if (!c) {
    std::fprintf(stderr, "error: gloo rank 1: %s\n", describe(c.error()).c_str());
    return 1;
  }
  char ack = 'k';
  for (auto bytes : sizes) {
    std::vector<char> buf(bytes);
    for (int i = 0; i < reps_for(bytes, given_reps) + 1; ++i) {
      if (auto err = (*c)->recv(buf.data(), bytes, 0, data_tag)) {
        std::fprintf(stderr, "error: gloo rank 1: %s\n", describe(err).c_str());
        return 1;
      }
      if (auto err = (*c)->send(&ack, 1, 0, ack_tag)) {
        std::fprintf(stderr, "error: gloo rank 1: %s\n", describe(err).c_str());
        return 1;
      }
    }
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes{size_t{1} << 20, size_t{16} << 20, size_t{64} << 20};
  int given_reps = 0;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--sizes-mib" && i + 1 < argc) {
      sizes.clear();
      std::string s = argv[++i];
      size_t pos = 0;
      while (pos < s.size()) {
        auto comma = s.find(',', pos);
        sizes.push_back(std::stoul(s.substr(pos, comma - pos)) << 20);
        pos = comma == std::string::npos ? s.size() : comma + 1;
      }
    } else if (k == "--reps" && i + 1 < argc) {
      given_reps = std::stoi(argv[++i]);
    } else if (k == "--json") {
      as_json = true;
    } else if (k == "--help" || k == "-h") {
      std::puts("usage: bench_gloo_bandwidth [--sizes-mib 1,16,64] [--reps N] [--json]");
      return 0;
    } else {
      std::fprintf(stderr, "error: unknown flag or missing value: %s (see --help)\n",
                   k.c_str());
      return 2;
    }
  }
  // Both children are forked before any thread exists.
  auto peer = tcp_peer::start();
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    std::perror("pipe");
    return 1;
  }
  std::fflush(nullptr);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) {
    std::perror("fork");
    return 1;
  }
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    close(pipefd[1]);
    _exit(run_receiver(pipefd[0], sizes, given_reps));
  }
  close(pipefd[0]);
  double load_before = load_average_1m();

  rendezvous_server store;
  if (auto err = store.start()) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 1;
  }
  uint16_t port = store.port();
  if (write(pipefd[1], &port, sizeof(port)) != sizeof(port))
    return 1;
  auto c = make_gloo_collective(options(port, 0));
  if (!c) {
    std::fprintf(stderr, "error: gloo rank 0: %s\n", describe(c.error()).c_str());
    return 1;
  }
  struct row {
    size_t bytes;
    std::vector<double> raw, gloo;
  };
  std::vector<row> rows;
  for (auto bytes : sizes) {
    row r;
    r.bytes = bytes;
    int reps = reps_for(bytes, given_reps);
    r.raw = peer.bandwidth(bytes, reps);
    std::vector<char> buf(bytes, 'g');
    char ack = 0;
    for (int i = 0; i < reps + 1; ++i) {
      auto t0 = clock_type::now();
      auto err = (*c)->send(buf.data(), bytes, 1, data_tag);
      if (!err)
        err = (*c)->recv(&ack, 1, 1, ack_tag);
      if (err) {
        std::fprintf(stderr, "error: gloo rank 0: %s\n", describe(err).c_str());
        return 1;
      }
      auto s = std::chrono::duration<double>(clock_type::now() - t0).count();
      if (i > 0)
        r.gloo.push_back(static_cast<double>(bytes) / s / 1e9);
    }
    rows.push_back(std::move(r));
  }
  c->reset();
  int status = 0;
  waitpid(child, &status, 0);
  store.stop();
  double load_after = load_average_1m();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "error: the receiving process failed\n");
    return 1;
  }

  if (as_json) {
    nlohmann::json j;
    j["machine"] = machine_summary();
    j["load_1m"] = {{"before", load_before}, {"after", load_after}};
    j["results"] = nlohmann::json::array();
    for (auto& r : rows)
      j["results"].push_back({{"mib", r.bytes >> 20},
                              {"reps", r.gloo.size()},
                              {"raw_tcp_gbps_median", median(r.raw)},
                              {"gloo_gbps_median", median(r.gloo)},
                              {"ratio", median(r.gloo) / median(r.raw)}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("machine: %s; load (1 min) %.2f before, %.2f after\n",
              machine_summary().c_str(), load_before, load_after);
  std::printf("median GB/s of timed transfers (send SIZE, answer 1 byte), two processes on "
              "127.0.0.1\n\n");
  std::printf("%-8s %6s %14s %14s %10s\n", "size", "reps", "raw TCP GB/s", "Gloo GB/s",
              "ratio");
  for (auto& r : rows)
    std::printf("%-8s %6zu %14.2f %14.2f %9.0f%%\n",
                (std::to_string(r.bytes >> 20) + " MiB").c_str(), r.gloo.size(), median(r.raw),
                median(r.gloo), 100 * median(r.gloo) / median(r.raw));
  for (auto& r : rows)
    if (r.bytes == size_t{16} << 20)
      std::printf("\ngoal (issue 3): Gloo at least 80%% of raw TCP at 16 MiB: %s\n",
                  median(r.gloo) >= 0.8 * median(r.raw) ? "met" : "MISSED");
  return 0;
}
