// bench_rpc_roundtrip: collective_rpc("noop") round trips to 1, 2 and 4 CPU workers on
// the embedded default, beside a raw loopback TCP ping-pong between two processes
// measured in the same run (just before each executor case).
//
//   bench_rpc_roundtrip [--worker-program PATH] [--tp 1,2,4] [--warmup 200]
//                       [--iterations 2000] [--json]
//
// The worker program is the built `cafex` binary: --worker-program, else `cafex` next to
// this binary, else ../bin/cafex (the build tree's layout).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "bench/raw_tcp.hpp"
#include "runtime/error.hpp"
#include "bench/report.hpp"
#include "cafex/executor.hpp"
#include "runtime/logging.hpp"
#include "bench/flags.hpp"

using namespace cafex;
using namespace cafex::bench;
using clock_type = std::chrono::steady_clock;

namespace {

std::string self_dir() {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return ".";
  buf[n] = '\0';
  std::string s = buf;
  return s.substr(0, s.rfind('/'));
}

std::string find_worker_program(const std::string& given) {
  if (!given.empty())
    return given;
  auto dir = self_dir();
  for (auto candidate : {dir + "/cafex", dir + "/../bin/cafex"})
    if (access(candidate.c_str(), X_OK) == 0)
      return candidate;
  return "";
}

nlohmann::json to_json(const latency_stats& s) {
  return {{"p50_us", s.p50},
          {"p99_us", s.p99},
          {"mean_us", s.mean},
          {"min_us", s.min},
          {"samples", s.samples_us.size()}};
}

struct row {
  int workers;
  latency_stats raw;
  latency_stats rpc;    ///< through the driver actor (before the dataflow is compiled)
  latency_stats direct; ///< on the direct lane (after)
  double startup_ms;
};

} // namespace

int main(int argc, char** argv) {
  std::string worker_program;
  std::vector<int> tps{1, 2, 4};
  int warmup = 200, iterations = 2000;
  bool as_json = false;
  cli::arg_parser flags("bench_rpc_roundtrip", "collective_rpc(\"noop\") to 1, 2, 4 workers");
  flags
    .flag(
      {{"--worker-program"}, "PATH", "the cafex program the workers run", "the sibling cafex"})
    .flag({{"--tp"}, "N,N,..", "worker counts", "1,2,4"})
    .flag({{"--warmup"}, "N", "calls before measuring", "200"})
    .flag({{"--iterations"}, "N", "measured calls per count", "2000"})
    .flag({{"--json"}, "", "print one JSON object", ""});
  bench::parse_flags(flags, argc, argv, [&](const cli::parsed_args& a) {
    worker_program = a.get("--worker-program");
    if (a.has("--tp"))
      tps = cli::parse_int_list(a.get("--tp"), "--tp");
    warmup = static_cast<int>(a.get_int("--warmup", 200, 0, 100000000));
    iterations = static_cast<int>(a.get_int("--iterations", 2000, 1, 100000000));
    as_json = a.has("--json");
  });
  worker_program = find_worker_program(worker_program);
  if (worker_program.empty()) {
    std::fprintf(stderr, "error: no cafex binary next to this one or in ../bin; build the "
                         "cafex_cli target or pass --worker-program PATH\n");
    return 2;
  }
  // Before any thread exists: the raw TCP peer is a forked child.
  auto peer = raw_tcp_peer::start();
  if (!peer) {
    std::fprintf(stderr, "error: raw TCP peer: %s\n", cafex::describe(peer.error()).c_str());
    return 1;
  }
  auto raw_pingpong = [&](int warm, int n) {
    auto xs = (*peer)->roundtrip_us(static_cast<size_t>(n), 64, static_cast<size_t>(warm));
    if (!xs) {
      std::fprintf(stderr, "error: raw TCP ping-pong: %s\n",
                   cafex::describe(xs.error()).c_str());
      std::exit(1);
    }
    return latency_of(std::move(*xs));
  };
  init_logging("warn", "bench");
  double load_before = load_average_1m();

  std::vector<row> rows;
  for (int tp : tps) {
    row r;
    r.workers = tp;
    r.raw = raw_pingpong(warmup, iterations);
    executor_options o;
    o.parallel.tensor_parallel_size = tp;
    o.worker_program = worker_program;
    o.log_level = "warn";
    o.model.num_layers = 1;
    auto t0 = clock_type::now();
    auto ex = executor::start(o);
    if (!ex) {
      std::fprintf(stderr, "error: executor start (tp=%d) failed: %s\n", tp,
                   describe(ex.error()).c_str());
      return 1;
    }
    r.startup_ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    auto calls = [&] {
      std::vector<double> samples;
      samples.reserve(static_cast<size_t>(iterations));
      for (int i = 0; i < warmup + iterations; ++i) {
        auto t = clock_type::now();
        auto res = (*ex)->collective_rpc("noop");
        auto us = std::chrono::duration<double, std::micro>(clock_type::now() - t).count();
        if (!res || res->size() != static_cast<size_t>(tp)) {
          std::fprintf(stderr, "error: collective_rpc(noop) failed at call %d: %s\n", i,
                       res ? "wrong number of results" : describe(res.error()).c_str());
          std::exit(1);
        }
        if (i >= warmup)
          samples.push_back(us);
      }
      return latency_of(std::move(samples));
    };
    // Before the dataflow is compiled every call goes through the driver actor (CAF);
    // once one step has compiled it, calls take the direct lane's rings.
    r.rpc = calls();
    scheduler_output step;
    step.new_requests.push_back(new_request{"warm", {1, 2, 3}});
    if (auto s = (*ex)->execute_model(step); !s) {
      std::fprintf(stderr, "error: execute_model: %s\n", describe(s.error()).c_str());
      return 1;
    }
    r.direct = calls();
    (*ex)->shutdown();
    rows.push_back(std::move(r));
  }
  double load_after = load_average_1m();

  if (as_json) {
    nlohmann::json j;
    j["machine"] = machine_summary();
    j["load_1m"] = {{"before", load_before}, {"after", load_after}};
    j["warmup"] = warmup;
    j["iterations"] = iterations;
    j["results"] = nlohmann::json::array();
    for (auto& r : rows)
      j["results"].push_back({{"workers", r.workers},
                              {"raw_tcp_pingpong", to_json(r.raw)},
                              {"collective_rpc_noop", to_json(r.rpc)},
                              {"p50_ratio", r.rpc.p50 / r.raw.p50},
                              {"direct_rpc_noop", to_json(r.direct)},
                              {"direct_p50_ratio", r.direct.p50 / r.raw.p50},
                              {"startup_ms", r.startup_ms}});
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("machine: %s; load (1 min) %.2f before, %.2f after\n", machine_summary().c_str(),
              load_before, load_after);
  std::printf("%d warm-up + %d timed calls per case; raw TCP: 64-byte ping-pong between two "
              "processes, measured just before each case\n\n",
              warmup, iterations);
  std::printf("%-8s %11s %11s %11s %11s %10s %11s %11s %10s\n", "workers", "raw p50 us",
              "raw p99 us", "actor p50", "actor p99", "p50 ratio", "direct p50", "direct p99",
              "p50 ratio");
  for (auto& r : rows)
    std::printf("%-8d %11.1f %11.1f %11.1f %11.1f %9.2fx %11.1f %11.1f %9.2fx\n", r.workers,
                r.raw.p50, r.raw.p99, r.rpc.p50, r.rpc.p99, r.rpc.p50 / r.raw.p50,
                r.direct.p50, r.direct.p99, r.direct.p50 / r.raw.p50);
  for (auto& r : rows)
    if (r.workers == 1)
      std::printf("\ngoal (issue 2): p50 to one worker within 2x the raw ping-pong: %s "
                  "(%.2fx)\n",
                  r.direct.p50 <= 2 * r.raw.p50 ? "met" : "MISSED", r.direct.p50 / r.raw.p50);
  return 0;
}
