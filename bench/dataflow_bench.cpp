// Dataflow benchmarks (issues 3 and 19): per-step overhead with a zero-layer model for
// five PP x TP shapes beside a raw loopback TCP round trip measured in the same run, on
// the direct lane and on the actor path; paced steps (one per ms and per 10 ms); the CPU
// every cafex process uses per 1000 steps and while no step runs; and step throughput
// with pipelining (PP = 2 against PP = 1) on a model where compute dominates.
//
//   bench_dataflow [--worker PATH] [--steps N] [--idle-s S] [--json]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <cstring>
#include <sstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "bench/proc_stats.hpp"
#include "bench/raw_tcp.hpp"
#include "cafex/executor.hpp"
#include "runtime/stats.hpp"
#include "bench/flags.hpp"

using namespace cafex;
using clk = std::chrono::steady_clock;

namespace {

std::string sibling_cafex() {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  auto slash = self.rfind('/');
  auto dir = self.substr(0, slash);
  return dir.substr(0, dir.rfind('/')) + "/bin/cafex";
}

scheduler_output decode_step(uint64_t id, const std::string& req, bool first, int32_t token) {
  scheduler_output s;
  s.step_id = id;
  if (first)
    s.new_requests.push_back(new_request{req, {1, 2, 3, 4}});
  else
    s.cached_requests.push_back(cached_request{req, token});
  return s;
}

std::unique_ptr<executor> start(const std::string& worker, int tp, int pp, model_config m,
                                bool direct = true, std::vector<int64_t>* pids = nullptr) {
  executor_options o;
  o.direct_lane = direct;
  if (pids)
    o.on_startup_phase = [pids](const startup_event& e) {
      if (!e.worker_pids.empty())
        *pids = e.worker_pids;
    };
  o.parallel.tensor_parallel_size = tp;
  o.parallel.pipeline_parallel_size = pp;
  o.worker_program = worker;
  o.log_level = "error";
  o.model = m;
  auto ex = executor::start(o);
  if (!ex) {
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    std::exit(1);
  }
  return std::move(*ex);
}

/// Single-request decode steps, back to back (period 0) or one per `period`; returns
/// per-step latencies in us.
std::vector<double> step_latencies(executor& ex, int steps, int warmup,
                                   std::chrono::microseconds period = {}) {
  static uint64_t run = 0;
  auto req = "r" + std::to_string(run++);
  std::vector<double> out;
  int32_t tok = 0;
  auto next = clk::now();
  for (int i = 0; i < warmup + steps; ++i) {
    if (period.count() > 0) {
      next += period;
      std::this_thread::sleep_until(next);
    }
    auto t = clk::now();
    auto r = ex.execute_model(decode_step(static_cast<uint64_t>(i), req, i == 0, tok));
    auto us = std::chrono::duration<double, std::micro>(clk::now() - t).count();
    if (!r) {
      std::fprintf(stderr, "error: %s\n", describe(r.error()).c_str());
      std::exit(1);
    }
    tok = r->sampled.at(0);
    if (i >= warmup)
      out.push_back(us);
  }
  return out;
}

std::vector<double> cpu_of(const std::vector<int64_t>& pids) {
  std::vector<double> out;
  for (auto pid : pids)
    out.push_back(bench::cpu_seconds(static_cast<pid_t>(pid)));
  return out;
}

double sum(const std::vector<double>& v) {
  double s = 0;
  for (auto x : v)
    s += x;
  return s;
}

model_runner_output must(caf::expected<model_runner_output> r) {
  if (!r) {
    std::fprintf(stderr, "error: %s\n", describe(r.error()).c_str());
    std::exit(1);
  }
  return std::move(*r);
}

/// Steps per second with two micro-batches alternating (vLLM's PP scheduling): each
/// micro-batch's next step waits only for its own previous result.
double pipelined_steps_per_s(executor& ex, int steps, int batch) {
  static int run = 0;
  auto prefix = "run" + std::to_string(run++) + "-mb";
  auto window = ex.max_concurrent_batches();
  std::vector<std::vector<int32_t>> last(2);
  std::vector<std::future<caf::expected<model_runner_output>>> inflight(2);
  std::vector<bool> started(2, false);
  auto make = [&](int mb, uint64_t id) {
    scheduler_output s;
    s.step_id = id;
    for (int j = 0; j < batch; ++j) {
      auto req = prefix + std::to_string(mb) + "-" + std::to_string(j);
      if (!started[mb])
        s.new_requests.push_back(new_request{req, {int32_t(j + 1), int32_t(mb + 2), 3, 4}});
      else
        s.cached_requests.push_back(cached_request{req, last[mb][j]});
    }
    started[mb] = true;
    return s;
  };
  auto t0 = clk::now();
  uint64_t id = 0;
  for (int mb = 0; mb < 2; ++mb) {
    inflight[mb] = ex.execute_model_async(make(mb, id++));
    if (window == 1)
      last[mb] = must(inflight[mb].get()).sampled;
  }
  int done = window == 1 ? 2 : 0;
  while (static_cast<int>(id) < steps) {
    for (int mb = 0; mb < 2 && static_cast<int>(id) < steps; ++mb) {
      if (window > 1) {
        auto r = inflight[mb].get();
        if (!r) {
          std::fprintf(stderr, "error: %s\n", describe(r.error()).c_str());
          std::exit(1);
        }
        last[mb] = r->sampled;
        ++done;
        inflight[mb] = ex.execute_model_async(make(mb, id++));
      } else {
        last[mb] = must(ex.execute_model(make(mb, id++))).sampled;
        ++done;
      }
    }
  }
  if (window > 1)
    for (int mb = 0; mb < 2; ++mb, ++done)
      inflight[mb].get();
  auto s = std::chrono::duration<double>(clk::now() - t0).count();
  return done / s;
}

} // namespace

int main(int argc, char** argv) {
  std::string worker = sibling_cafex();
  int steps = 500;
  double idle_s = 10;
  bool json_out = false;
  cli::arg_parser flags("bench_dataflow", "per-step overhead of the dataflow at each tp x pp");
  flags.flag({{"--worker"}, "PATH", "the cafex program the workers run", "the sibling cafex"})
    .flag({{"--steps"}, "N", "steps per shape", "500"})
    .flag({{"--idle-s"}, "S", "seconds of no steps over which idle CPU is measured", "10"})
    .flag({{"--json"}, "", "print one JSON object", ""});
  bench::parse_flags(flags, argc, argv, [&](const cli::parsed_args& a) {
    worker = a.get("--worker", worker);
    steps = static_cast<int>(a.get_int("--steps", 500, 1, 100000000));
    idle_s = a.get_double("--idle-s", 10, 0.1, 3600);
    json_out = a.has("--json");
  });
  nlohmann::json report;
  auto raw = bench::raw_tcp_roundtrip_us(static_cast<size_t>(steps) * 4);
  if (!raw) {
    std::fprintf(stderr, "error: raw tcp: %s\n", describe(raw.error()).c_str());
    return 1;
  }
  auto raw_p50 = percentile(*raw, 50);
  report["raw_tcp_rtt_us"] = {{"p50", raw_p50}, {"p99", percentile(*raw, 99)}};
  std::printf("raw loopback TCP round trip: p50 %.1f us, p99 %.1f us\n\n", raw_p50,
              percentile(*raw, 99));
  std::printf("per-step overhead, zero-layer model, 1 request, %d steps; paced: one step "
              "per 1 ms / 10 ms; CPU: every cafex process, ms per 1000 steps back to back "
              "and the busiest one's %% of a core over %.0f s without steps\n",
              steps, idle_s);
  std::printf("%-8s %9s %9s %9s %9s %10s %10s %11s %9s\n", "tp x pp", "p50 us", "p99 us",
              "p50/rtt", "actor p50", "1ms p50", "10ms p50", "cpu ms/1k", "idle %");
  model_config zero;
  zero.num_layers = 0;
  for (auto [tp, pp] :
       std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {1, 2}, {2, 2}, {1, 3}}) {
    double actor_p50 = 0;
    { // the same shape with every step through the driver actor: the path it replaces
      auto ex = start(worker, tp, pp, zero, false);
      actor_p50 = percentile(step_latencies(*ex, steps, 50), 50);
    }
    std::vector<int64_t> pids;
    auto ex = start(worker, tp, pp, zero, true, &pids);
    pids.insert(pids.begin(), getpid());
    step_latencies(*ex, 0, 50);
    auto before = sum(cpu_of(pids));
    auto lat = step_latencies(*ex, steps, 0);
    auto cpu_ms_per_1k = (sum(cpu_of(pids)) - before) * 1e6 / steps;
    auto paced1 = percentile(step_latencies(*ex, std::min(steps, 1000), 10,
                                            std::chrono::microseconds{1000}),
                             50);
    auto paced10 = percentile(step_latencies(*ex, std::min(steps, 200), 5,
                                             std::chrono::microseconds{10000}),
                              50);
    auto idle_before = cpu_of(pids);
    std::this_thread::sleep_for(std::chrono::duration<double>(idle_s));
    auto idle_after = cpu_of(pids);
    double idle_max = 0;
    std::vector<double> idle_pct; // the driver's process first, then the workers by rank
    for (size_t i = 0; i < pids.size(); ++i) {
      idle_pct.push_back((idle_after[i] - idle_before[i]) / idle_s * 100);
      idle_max = std::max(idle_max, idle_pct.back());
    }
    auto p50 = percentile(lat, 50), p99 = percentile(lat, 99);
    std::printf("%d x %d    %9.1f %9.1f %9.2f %9.1f %10.1f %10.1f %11.1f %9.2f\n", tp, pp, p50,
                p99, p50 / raw_p50, actor_p50, paced1, paced10, cpu_ms_per_1k, idle_max);
    report["overhead"].push_back({{"tp", tp},
                                  {"pp", pp},
                                  {"p50_us", p50},
                                  {"p99_us", p99},
                                  {"ratio_to_rtt", p50 / raw_p50},
                                  {"actor_path_p50_us", actor_p50},
                                  {"paced_1ms_p50_us", paced1},
                                  {"paced_10ms_p50_us", paced10},
                                  {"cpu_ms_per_1000_steps", cpu_ms_per_1k},
                                  {"idle_cpu_pct_max", idle_max},
                                  {"idle_cpu_pct", idle_pct},
                                  {"processes", pids.size()}});
  }
  model_config heavy;
  heavy.hidden_size = 512;
  heavy.num_heads = 8;
  heavy.num_layers = 8;
  heavy.ffn_size = 2048;
  heavy.vocab_size = 4096;
  std::printf("\npipelining, %d layers x hidden %d, 2 micro-batches of 8 requests\n",
              heavy.num_layers, heavy.hidden_size);
  double base = 0;
  for (int pp : {1, 2}) {
    auto ex = start(worker, 1, pp, heavy);
    pipelined_steps_per_s(*ex, 10, 8); // warm-up
    auto sps = pipelined_steps_per_s(*ex, 60, 8);
    if (pp == 1)
      base = sps;
    std::printf("pp=%d: %.1f steps/s (%.2fx pp=1)\n", pp, sps, sps / base);
    report["pipelining"].push_back(
      {{"pp", pp}, {"steps_per_s", sps}, {"speedup", sps / base}});
  }
  if (json_out)
    std::printf("%s\n", report.dump().c_str());
  return 0;
}
