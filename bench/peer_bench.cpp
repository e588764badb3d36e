// The cafex side of the side-by-side benchmark with Ray (issue 8, bench/peers/): the same
// shapes, the same per-step payload (a ~4 KB scheduler output) and no-op-sized work (a
// zero-layer model on empty steps), measured the way bench/peers/ray_peer.py measures
// Ray. Writes the JSON that bench/peers/compare.py reads.
//
//   bench_cafex_peer [--worker PATH] [--steps N] [--out FILE]
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "cafex/executor.hpp"
#include "runtime/stats.hpp"
#include "bench/flags.hpp"
#include "bench/proc_stats.hpp"

using namespace cafex;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string sibling(const std::string& name) {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  auto dir = self.substr(0, self.rfind('/'));
  return dir.substr(0, dir.rfind('/')) + "/bin/" + name;
}

/// An empty step (no request: every stage passes it on) carrying ~4 KB of finished ids,
/// like the Ray peer's 4 KB pickled scheduler output.
scheduler_output payload_step(uint64_t id) {
  scheduler_output s;
  s.step_id = id;
  for (int i = 0; i < 100; ++i)
    s.finished.push_back("finished-request-" + std::to_string(id) + "-" + std::to_string(i)
                         + "-padding-padding");
  return s;
}

std::unique_ptr<executor> start(const std::string& worker, int tp, int pp) {
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.parallel.pipeline_parallel_size = pp;
  o.worker_program = worker;
  o.log_level = "error";
  o.model.num_layers = 0;
  auto ex = executor::start(o);
  if (!ex) {
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    std::exit(1);
  }
  return std::move(*ex);
}

void must(const caf::expected<model_runner_output>& r) {
  if (!r) {
    std::fprintf(stderr, "error: %s\n", describe(r.error()).c_str());
    std::exit(1);
  }
}

std::vector<double> back_to_back(executor& ex, int steps, int warmup) {
  std::vector<double> out;
  for (int i = 0; i < warmup + steps; ++i) {
    auto t = clk::now();
    must(ex.execute_model(payload_step(static_cast<uint64_t>(i))));
    if (i >= warmup)
      out.push_back(std::chrono::duration<double, std::micro>(clk::now() - t).count());
  }
  return out;
}

/// One step started every 1 ms on an absolute schedule (pacing is the workload here,
/// not synchronisation).
std::vector<double> paced(executor& ex, int steps, int warmup) {
  std::vector<double> out;
  auto next = clk::now();
  for (int i = 0; i < warmup + steps; ++i) {
    next += 1ms;
    auto t = clk::now();
    must(ex.execute_model(payload_step(static_cast<uint64_t>(i))));
    if (i >= warmup)
      out.push_back(std::chrono::duration<double, std::micro>(clk::now() - t).count());
    std::this_thread::sleep_until(next);
  }
  return out;
}

double pipelined(executor& ex, int steps) {
  auto window = ex.max_concurrent_batches();
  std::deque<std::future<caf::expected<model_runner_output>>> q;
  auto t0 = clk::now();
  for (int i = 0; i < steps; ++i) {
    if (q.size() >= window) {
      must(q.front().get());
      q.pop_front();
    }
    q.push_back(ex.execute_model_async(payload_step(static_cast<uint64_t>(i))));
  }
  while (!q.empty()) {
    must(q.front().get());
    q.pop_front();
  }
  return steps / std::chrono::duration<double>(clk::now() - t0).count();
}

/// `cafex run --tp 2 --pp 2 --steps 1` from exec to exit (an upper bound of start-up
/// through the first step: it also counts the shutdown).
double startup_s(const std::string& cafex) {
  auto t0 = clk::now();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(cafex.c_str(), cafex.c_str(), "run", "--tp", "2", "--pp", "2", "--steps", "1",
          "--json", nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return std::chrono::duration<double>(clk::now() - t0).count();
}

/// SIGKILL of rank 1 while steps run; time until the driver's call fails.
double kill_detect_s(executor& ex) {
  auto info = ex.collective_rpc("process_info", nullptr, 0ms, 1);
  if (!info) {
    std::fprintf(stderr, "error: %s\n", describe(info.error()).c_str());
    std::exit(1);
  }
  auto pid = static_cast<pid_t>((*info)[0]["pid"].get<int64_t>());
  kill(pid, SIGKILL);
  auto t0 = clk::now();
  for (uint64_t i = 0;; ++i) {
    auto r = ex.execute_model(payload_step(1000000 + i));
    if (!r)
      return std::chrono::duration<double>(clk::now() - t0).count();
    if (clk::now() - t0 > 60s)
      return -1;
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string cafex = sibling("cafex");
  std::string out_file;
  int steps = 2000;
  cli::arg_parser flags("bench_cafex_peer", "the cafex side of the Ray comparison");
  flags.flag({{"--worker"}, "PATH", "the cafex program the workers run", "the sibling cafex"})
    .flag({{"--steps"}, "N", "steps per shape", "2000"})
    .flag({{"--out"}, "FILE", "write the JSON report there", ""});
  bench::parse_flags(flags, argc, argv, [&](const cli::parsed_args& a) {
    cafex = a.get("--worker", cafex);
    steps = static_cast<int>(a.get_int("--steps", 2000, 1, 100000000));
    out_file = a.get("--out");
  });
  nlohmann::json report;
  report["version"] = std::string("cafex ") + CAFEX_VERSION;
  std::printf("%-6s %9s %9s %10s %10s %12s %10s\n", "shape", "p50 us", "p99 us", "paced p50",
              "paced p99", "pipelined/s", "CPU ms/1k");
  for (auto [tp, pp] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
    auto ex = start(cafex, tp, pp);
    back_to_back(*ex, 0, 1); // the workers exist once a step ran
    auto pids = bench::children(getpid());
    pids.push_back(getpid());
    auto cpu0 = bench::cpu_seconds(pids);
    auto b2b = back_to_back(*ex, steps, 200);
    auto cpu_ms_per_1k = (bench::cpu_seconds(pids) - cpu0) * 1e6 / (steps + 200);
    auto pc = paced(*ex, steps, 50);
    auto sps = pipelined(*ex, steps);
    nlohmann::json s = {{"tp", tp},
                        {"pp", pp},
                        {"p50_us", percentile(b2b, 50)},
                        {"p99_us", percentile(b2b, 99)},
                        {"paced_p50_us", percentile(pc, 50)},
                        {"paced_p99_us", percentile(pc, 99)},
                        {"pipelined_steps_per_s", sps},
                        {"cpu_ms_per_1000_steps", cpu_ms_per_1k}};
    std::printf("%dx%d   %9.1f %9.1f %10.1f %10.1f %12.0f %10.0f\n", tp, pp,
                percentile(b2b, 50), percentile(b2b, 99), percentile(pc, 50),
                percentile(pc, 99), sps, cpu_ms_per_1k);
    report["shapes"].push_back(s);
  }
  report["startup_s"] = startup_s(cafex);
  {
    auto ex = start(cafex, 2, 2);
    back_to_back(*ex, 300, 0);
    long kb = bench::rss_kb(getpid());
    for (auto c : bench::children(getpid()))
      kb += bench::rss_kb(c);
    report["rss_mb"] = kb / 1024.0;
    report["kill_detect_s"] = kill_detect_s(*ex);
  }
  std::printf("startup %.3f s, rss %.1f MiB, kill detected in %.4f s\n",
              report["startup_s"].get<double>(), report["rss_mb"].get<double>(),
              report["kill_detect_s"].get<double>());
  if (!out_file.empty()) {
    std::ofstream(out_file) << report.dump(2) << "\n";
  }
  return 0;
}
