// bench_model: the "hf" runner on a checkpoint through the executor (real worker
// processes): start-up (spawn + load) time, each rank's resident memory against its
// float32 shard, prefill tokens/s (one prompt of --prompt-len tokens) and decode tokens/s
// at each --batches size. bench/models/run.sh runs it beside transformers and llama.cpp on
// the same weights. Prints one JSON object.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "bench/flags.hpp"
#include "bench/report.hpp"
#include "cafex/executor.hpp"
#include "runtime/error.hpp"
#include "runtime/models/hf/hf_weights.hpp"

using namespace cafex;
using clock_type = std::chrono::steady_clock;

namespace {

std::string self_dir() {
  char buf[4096];
  auto n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return ".";
  std::string s(buf, static_cast<size_t>(n));
  return s.substr(0, s.rfind('/'));
}

/// VmRSS or VmHWM of `pid` in MiB (-1 when unreadable).
double status_mib(int64_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0)
      return std::stod(line.substr(field.size() + 1)) / 1024.0;
  return -1;
}

/// Float32 bytes of the shard of TP rank `r` (pp 1), in MiB.
double shard_mib(const hf::hf_config& c, int r, int tp) {
  auto s = hf::slices_of(c, r, tp);
  const double h = static_cast<double>(c.hidden_size), d = static_cast<double>(c.head_dim);
  double per_layer = (s.q_heads + 2.0 * s.kv_heads) * d * h + h * s.q_heads * d
                     + 3.0 * static_cast<double>(s.inter) * h + 2 * h;
  double floats = per_layer * c.num_layers + 2.0 * static_cast<double>(s.vocab) * h + h;
  return floats * 4 / (1024.0 * 1024.0);
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

std::vector<int32_t> tokens(int n, int salt, int64_t vocab) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i)
    v.push_back(static_cast<int32_t>((i * 7919 + salt * 104729 + 11) % (vocab - 3) + 3));
  return v;
}

} // namespace

int main(int argc, char** argv) {
  cli::arg_parser p("bench_model",
                    "Start-up, memory, prefill and decode throughput of the hf runner on a "
                    "checkpoint; one JSON object.");
  p.flag({{"--model"}, "DIR", "Hugging Face checkpoint directory", ""})
    .flag({{"--tp"}, "N", "tensor parallel size", "1"})
    .flag({{"--prompt-len"}, "N", "prefill prompt length", "128"})
    .flag({{"--decode-steps"}, "N", "decode steps per batch size", "32"})
    .flag({{"--batches"}, "B,B,...", "decode batch sizes", "1,8"});
  std::string model;
  int tp = 1, prompt_len = 128, steps = 32;
  std::vector<int> batches;
  bench::parse_flags(p, argc, argv, [&](const cli::parsed_args& a) {
    model = a.get("--model");
    if (model.empty())
      throw cli::usage_error{"--model DIR is required"};
    tp = static_cast<int>(a.get_int("--tp", 1, 1, 64));
    prompt_len = static_cast<int>(a.get_int("--prompt-len", 128, 1, 1 << 20));
    steps = static_cast<int>(a.get_int("--decode-steps", 32, 1, 1 << 20));
    batches = cli::parse_int_list(a.get("--batches", "1,8"), "--batches");
  });
  auto cfg = hf::load_hf_config(model);
  if (!cfg) {
    std::fprintf(stderr, "error: %s\n", describe(cfg.error()).c_str());
    return 2;
  }
  executor_options o;
  o.parallel.tensor_parallel_size = tp;
  o.model.name = "hf";
  o.model.path = model;
  o.device = "cpu";
  o.log_level = "warn";
  o.worker_program = self_dir() + "/../bin/cafex";
  o.start_timeout = std::chrono::minutes(5);
  std::vector<int64_t> pids;
  o.on_startup_phase = [&](const startup_event& e) {
    if (!e.worker_pids.empty())
      pids = e.worker_pids;
  };
  auto t0 = clock_type::now();
  auto ex = executor::start(o);
  if (!ex) {
    std::fprintf(stderr, "error: %s\n", describe(ex.error()).c_str());
    return 1;
  }
  const double start_s = seconds_since(t0);
  nlohmann::json ranks = nlohmann::json::array();
  for (size_t r = 0; r < pids.size(); ++r)
    ranks.push_back({{"pid", pids[r]},
                     {"rss_mib", status_mib(pids[r], "VmRSS")},
                     {"shard_f32_mib", shard_mib(*cfg, static_cast<int>(r), tp)}});
  uint64_t step_id = 0;
  std::vector<std::string> finished; // freed by the next step
  auto run = [&](scheduler_output s) {
    s.step_id = step_id++;
    s.finished = std::move(finished);
    finished.clear();
    auto out = (*ex)->execute_model(s);
    if (!out) {
      std::fprintf(stderr, "error: step %llu: %s\n",
                   static_cast<unsigned long long>(s.step_id), describe(out.error()).c_str());
      std::exit(1);
    }
    for (const auto& e : out->errors)
      if (!e.empty()) {
        std::fprintf(stderr, "error: %s\n", e.c_str());
        std::exit(1);
      }
    return *out;
  };
  // Prefill: the best of three prompts (the first also warms the caches up).
  double prefill_s = 1e30;
  for (int i = 0; i < 3; ++i) {
    scheduler_output s;
    s.new_requests.emplace_back("p" + std::to_string(i),
                                tokens(prompt_len, i, cfg->vocab_size));
    auto t = clock_type::now();
    run(s);
    prefill_s = std::min(prefill_s, seconds_since(t));
    finished.push_back("p" + std::to_string(i));
  }
  nlohmann::json decode = nlohmann::json::object();
  for (int b : batches) {
    scheduler_output s;
    for (int i = 0; i < b; ++i)
      s.new_requests.emplace_back("d" + std::to_string(b) + "-" + std::to_string(i),
                                  tokens(16, 100 + i, cfg->vocab_size));
    auto out = run(s);
    auto t = clock_type::now();
    for (int k = 0; k < steps; ++k) {
      scheduler_output d;
      for (size_t i = 0; i < out.req_ids.size(); ++i)
        d.cached_requests.push_back({out.req_ids[i], out.sampled[i]});
      out = run(d);
    }
    const double secs = seconds_since(t);
    decode[std::to_string(b)] = {{"tokens_per_s", b * steps / secs},
                                 {"step_ms", secs * 1000 / steps}};
    finished = out.req_ids;
  }
  for (size_t r = 0; r < pids.size() && r < ranks.size(); ++r)
    ranks[r]["peak_rss_mib"] = status_mib(pids[r], "VmHWM");
  (*ex)->shutdown();
  nlohmann::json j = {{"peer", "cafex"},
                      {"tp", tp},
                      {"start_s", start_s},
                      {"ranks", ranks},
                      {"prefill_tokens_per_s", prompt_len / prefill_s},
                      {"prompt_len", prompt_len},
                      {"decode", decode},
                      {"machine", bench::machine_summary()},
                      {"load_1m", bench::load_average_1m()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}
