// cafex run: start the executor (embedded node agent by default), run --steps steps of
// the reference model, print one line per step and a summary, shut down.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cafex/executor.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/run_flags.hpp"
#include "cli/step_recovery.hpp"
#include "runtime/logging.hpp"
#include "runtime/stats.hpp"
#include "runtime/models/workload.hpp"

namespace cafex::cli {

namespace {

/// What each worker process itself reports: rank, node, pid and its device variable.
nlohmann::json worker_report(executor& ex) {
  auto info = ex.collective_rpc("process_info");
  if (!info) {
    spdlog::error("--report-workers: {}", describe(info.error()));
    return nlohmann::json::array();
  }
  return nlohmann::json(*info);
}

} // namespace

int run_command(int argc, char** argv) {
  auto parser = run_parser();
  executor_options opts;
  int steps = 0;
  int batch = 0;
  bool as_json = false;
  bool report_workers = false;
  try {
    auto args = parser.parse(argc, argv, 2);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      return 0;
    }
    if (!args.positional.empty())
      throw usage_error{"unexpected argument '" + args.positional.front() + "'"};
    opts = executor_options_from(args);
    steps = static_cast<int>(args.get_int("--steps", 8, 1, 1000000));
    batch = static_cast<int>(args.get_int("--batch", 4, 1, 4096));
    as_json = args.has("--json");
    report_workers = args.has("--report-workers");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  if (auto err = init_logging(opts.log_level, "driver")) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto ex = executor::start(opts);
  if (!ex) {
    // The error itself says that start-up failed, and in which phase.
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    return code_of(ex.error()) == errc::invalid_argument ? 2 : 1;
  }
  auto startup_ms =
    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  demo_workload work(opts.model.seed, batch, opts.model.vocab_size);
  nlohmann::json tokens = nlohmann::json::array();
  std::vector<double> lat_us;
  int recoveries = 0;
  for (int s = 0; s < steps; ++s) {
    auto step = work.next_step();
    auto t = std::chrono::steady_clock::now();
    auto out = (*ex)->execute_model(step);
    auto us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count();
    if (!out && opts.on_worker_failure == failure_policy::restart
        && recoveries < opts.max_restarts + 1 && recoverable(out.error())) {
      // The executor recovers on its own; this host waits for it, then re-prefills.
      std::fprintf(stderr, "warning: step %d failed (%s); waiting for recovery\n", s,
                   describe(out.error()).c_str());
      ++recoveries;
      if (wait_ready(**ex, opts.start_timeout)) {
        work.recompute();
        --s;
        continue;
      }
    }
    if (!out) {
      std::fprintf(stderr, "error: step %d failed: %s\n", s, describe(out.error()).c_str());
      (*ex)->shutdown();
      return 1;
    }
    if (!out->errors.empty()) {
      for (size_t i = 0; i < out->errors.size(); ++i)
        if (!out->errors[i].empty())
          std::fprintf(stderr, "error: step %d: %s\n", s, out->errors[i].c_str());
      (*ex)->shutdown();
      return 1;
    }
    work.observe(*out);
    lat_us.push_back(us);
    tokens.push_back(out->sampled);
    if (!as_json)
      std::printf("step %d: %zu request(s), tokens %s, %.1f us\n", s, out->sampled.size(),
                  nlohmann::json(out->sampled).dump().c_str(), us);
  }
  nlohmann::json workers = report_workers ? worker_report(**ex) : nlohmann::json();
  nlohmann::json transports = nlohmann::json::array();
  if (auto stats = (*ex)->dataflow_stats(); stats && stats->contains("tp_transport"))
    transports = (*stats)["tp_transport"];
  (*ex)->shutdown();
  auto p50 = percentile(lat_us, 50);
  auto p99 = percentile(lat_us, 99);
  if (as_json) {
    nlohmann::json j = {{"tp", opts.parallel.tensor_parallel_size},
                        {"pp", opts.parallel.pipeline_parallel_size},
                        {"steps", steps},
                        {"batch", batch},
                        {"seed", opts.model.seed},
                        {"tokens", tokens},
                        {"step_latency_us", {{"p50", p50}, {"p99", p99}}},
                        {"startup_ms", startup_ms},
                        {"tp_transport", transports}};
    if (report_workers)
      j["workers"] = workers;
    std::printf("%s\n", j.dump().c_str());
  } else {
    if (report_workers)
      for (const auto& w : workers)
        std::printf("worker %s\n", w.dump().c_str());
    std::printf("done: %d step(s) x %d request(s) on tp=%d pp=%d (TP over %s); step latency "
                "p50 %.1f us, p99 %.1f us; start-up %.0f ms\n",
                steps, batch, opts.parallel.tensor_parallel_size,
                opts.parallel.pipeline_parallel_size, transports.dump().c_str(), p50, p99,
                startup_ms);
  }
  return 0;
}

} // namespace cafex::cli
