// Decode steps of the hf runner on one GPU, in this process (no executor): the
// "same model, same kernels, one process" baseline of the GPU models issue, and the HBM
// bandwidth it reaches. For each batch size: `cafex run`'s workload (demo_workload, seed
// 0: prompts of 3-11 tokens prefilled at step 0, then one token per request per step),
// --warmup decode steps, then --steps timed ones, each timed on the host around execute()
// (which ends with the one wait for the stream) - the very steps `cafex run --model DIR
// --batch B --steps N` runs through the executor. Reported: p50 and
// p90 ms per step, tokens/s, and the weight bytes read per step over the p50 step time,
// beside a device-to-device copy measured in the same run (bytes read + written).
//
//   cuda_llama_bench --model bench/models/llama3-8b-shape --random-weights --batches 1,32
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>
#include <nlohmann/json.hpp>

#include "bench/flags.hpp"
#include "runtime/error.hpp"
#include "runtime/models/collective.hpp"
#include "runtime/models/workload.hpp"
#include "runtime/models/cuda/cuda_blas.hpp"
#include "runtime/models/cuda/cuda_llama_kernels.hpp"
#include "runtime/models/cuda/cuda_llama_model.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"

using namespace cafex;
using clock_type = std::chrono::steady_clock;

namespace {

struct options {
  std::string model;
  bool random = false;
  std::vector<int> batches{1, 32};
  int steps = 64;
  int warmup = 8;
  int64_t kv_tokens = 0;
  std::string json;
  bool kernels = false;
  bool eager = false;
};

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

/// GB/s of a device-to-device copy of `bytes`, counting the bytes read and written.
double copy_bandwidth(size_t bytes) {
  void* a = nullptr;
  void* b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess)
    return 0.0;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e0);
  const int reps = 10;
  for (int i = 0; i < reps; ++i)
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaFree(a);
  cudaFree(b);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * static_cast<double>(bytes) * reps / (ms * 1e-3) / 1e9;
}

/// The decode products alone: gemv and cuBLAS on the 8B shape's matrices, GB/s of weights.
void kernel_table(double copy_gbs) {
  const std::pair<int, int> shapes[] = {
    {6144, 4096}, {4096, 4096}, {28672, 4096}, {4096, 14336}, {128256, 4096}};
  cuda_stream stream;
  (void) stream.create();
  auto s = stream.get();
  auto engine = gemm_engine::create(gemm_backend::cublas, s);
  std::printf("%8s %6s %4s %10s %10s %8s\n", "n", "k", "m", "kernel", "GB/s", "of_copy");
  for (const auto& shape : shapes) {
    const int n = shape.first, k = shape.second;
    device_buffer w, x, y;
    const size_t wn = static_cast<size_t>(n) * k;
    if (w.reserve(wn * 2) || x.reserve(size_t{32} * k * 2) || y.reserve(size_t{32} * n * 4))
      return;
    (void) llama_kernels::fill_random(w.as<uint16_t>(), wn, 1, 0.01f, s);
    (void) llama_kernels::fill_random(x.as<uint16_t>(), size_t{32} * k, 2, 1.0f, s);
    for (int m : {1, 2, 4, 8, 32})
      for (int use_gemv : {1, 0}) {
        if (use_gemv && m > llama_kernels::gemv_max_rows)
          continue;
        if (!use_gemv && !engine)
          continue;
        auto run = [&] {
          return use_gemv ? llama_kernels::gemv(m, n, k, x.as<uint16_t>(), w.as<uint16_t>(),
                                                y.as<float>(), s)
                          : (*engine)->run_bf16(m, n, k, x.as<uint16_t>(), w.as<uint16_t>(),
                                                y.as<float>());
        };
        cuda_event e0, e1;
        (void) e0.create();
        (void) e1.create();
        for (int i = 0; i < 3; ++i)
          (void) run();
        const int reps = 20;
        cudaEventRecord(e0.get(), s);
        for (int i = 0; i < reps; ++i)
          (void) run();
        cudaEventRecord(e1.get(), s);
        cudaEventSynchronize(e1.get());
        float ms = 0;
        cudaEventElapsedTime(&ms, e0.get(), e1.get());
        const double gbs = static_cast<double>(wn) * 2 * reps / (ms * 1e-3) / 1e9;
        std::printf("%8d %6d %4d %10s %10.0f %7.0f%%\n", n, k, m, use_gemv ? "gemv" : "cublas",
                    gbs, 100.0 * gbs / copy_gbs);
      }
  }
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  cli::arg_parser flags("cuda_llama_bench", "decode steps of the hf runner on one GPU");
  flags.flag({{"--model"}, "DIR", "checkpoint directory (config.json)", ""})
    .flag({{"--random-weights"}, "", "draw the weights on the GPU (config.json only)", ""})
    .flag({{"--batches"}, "N,N,...", "batch sizes", "1,32"})
    .flag({{"--steps"}, "N", "timed decode steps per batch size", "64"})
    .flag({{"--warmup"}, "N", "untimed decode steps first", "8"})
    .flag({{"--kv-cache-tokens"}, "N", "KV cache positions", "the runner's default"})
    .flag({{"--json"}, "FILE", "write the rows there", ""})
    .flag({{"--kernels"}, "", "also time the decode products alone (gemv, cuBLAS)", ""})
    .flag({{"--enforce-eager"}, "", "decode without CUDA graphs", ""});
  bench::parse_flags(flags, argc, argv, [&](const cli::parsed_args& a) {
    opt.model = a.get("--model");
    if (opt.model.empty())
      throw cli::usage_error{"--model DIR is required"};
    opt.random = a.has("--random-weights");
    if (a.has("--batches"))
      opt.batches = cli::parse_int_list(a.get("--batches"), "--batches");
    opt.steps = static_cast<int>(a.get_int("--steps", 64, 1, 1 << 20));
    opt.warmup = static_cast<int>(a.get_int("--warmup", 8, 0, 1 << 20));
    opt.kv_tokens = a.get_int("--kv-cache-tokens", 0, 1, 1L << 40);
    opt.json = a.get("--json");
    opt.kernels = a.has("--kernels");
    opt.eager = a.has("--enforce-eager");
  });
  if (cuda_device_count() < 1) {
    std::printf("cuda_llama_bench: skipped: no GPU\n");
    return 0;
  }
  cudaSetDevice(0);
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  const double copy_gbs = copy_bandwidth(size_t{2} << 30);
  if (opt.kernels)
    kernel_table(copy_gbs);
  model_config cfg;
  cfg.name = "hf";
  cfg.path = opt.model;
  cfg.random_weights = opt.random;
  cfg.seed = 1;
  cfg.kv_cache_tokens = opt.kv_tokens;
  cfg.enforce_eager = opt.eager;
  solo_collective solo;
  cuda_llama_model model;
  const auto t_load = clock_type::now();
  if (auto err = model.load(cfg, shard_info{}, solo)) {
    std::fprintf(stderr, "cuda_llama_bench: %s\n", describe(err).c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(clock_type::now() - t_load).count();
  const double gb = static_cast<double>(model.weight_bytes()) / 1e9;
  std::printf("cuda_llama_bench: %s, %s, %.2f GB of bfloat16 weights (load %.1f s), "
              "device copy %.0f GB/s (read + write), %s\n",
              prop.name, opt.model.c_str(), gb, load_s, copy_gbs,
              opt.eager ? "eager" : "CUDA graphs");
  std::printf("%6s %10s %10s %12s %12s %8s\n", "batch", "p50_ms", "p90_ms", "tokens/s",
              "weights_GB/s", "of_copy");
  nlohmann::json rows = nlohmann::json::array();
  for (int batch : opt.batches) {
    // `cafex run`'s own workload (seed 0): the same steps as `cafex run --batch B`.
    demo_workload work(0, batch, static_cast<int>(model.config().vocab_size));
    std::vector<double> ms;
    std::vector<std::string> ids;
    for (int k = 0; k < 1 + opt.warmup + opt.steps; ++k) {
      auto so = work.next_step();
      for (const auto& r : so.new_requests)
        ids.push_back(r.req_id);
      const auto t0 = clock_type::now();
      auto out = model.execute(so, nullptr);
      const auto t1 = clock_type::now();
      if (!out || !out->output.errors.empty()) {
        std::fprintf(stderr, "cuda_llama_bench: step %d at batch %d failed: %s\n", k, batch,
                     out ? out->output.errors.front().c_str() : describe(out.error()).c_str());
        return 1;
      }
      work.observe(out->output);
      if (k > opt.warmup) // step 0 prefills
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    scheduler_output done;
    done.step_id = 1u << 30;
    done.finished = ids;
    (void) model.execute(done, nullptr);
    const double p50 = percentile(ms, 0.5), p90 = percentile(ms, 0.9);
    const double weights_gbs = gb / (p50 * 1e-3);
    std::printf("%6d %10.3f %10.3f %12.0f %12.0f %7.0f%%  graphs=%zu %s\n", batch, p50, p90,
                batch * 1000.0 / p50, weights_gbs, 100.0 * weights_gbs / copy_gbs,
                model.graphs(), model.graphs_note().c_str());
    rows.push_back({{"batch", batch},
                    {"p50_ms", p50},
                    {"p90_ms", p90},
                    {"tokens_per_s", batch * 1000.0 / p50},
                    {"weights_gb_per_s", weights_gbs}});
  }
  if (!opt.json.empty()) {
    nlohmann::json j{{"device", prop.name},
                     {"model", opt.model},
                     {"weight_gb", gb},
                     {"copy_gb_per_s", copy_gbs},
                     {"rows", rows}};
    if (FILE* f = std::fopen(opt.json.c_str(), "w")) {
      std::fputs(j.dump().c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
