// The hf runner on CUDA (bfloat16) against transformers and against the CPU runner, in
// one process on one GPU: every committed fixture (tests/hf/fixtures) generated greedily
// with top-5 logprobs by TP x PP grids of cuda_llama_model shards (TP ranks on threads
// over the fake collective, so the sums stage through host memory; PP stages chained),
// checked logprob-close (vLLM's check_logprobs_close: at the first position where two
// runs differ, each one's token is among the other's top 5 there, and later positions
// follow different histories) to transformers' float32 tokens and to the CPU runner at
// (1, 1). Also: the same seed gives the same sampled tokens twice; a full KV cache fails
// the one request; random weights load and run. Skipped (not failed) without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "hf_fixtures.hpp"
#include <unistd.h>

#include "gpu_test_support.hpp"
#include "runtime/error.hpp"
#include "runtime/models/cuda/cuda_llama_model.hpp"
#include "runtime/models/hf/llama_model.hpp"
#include "transport/fake_collective.hpp"

using namespace cafex;

namespace {

using test::fixture_dir;
using test::read_json;

const auto& fixtures = test::hf_fixtures;

/// A TP x PP grid of one runner type, driven step by step as the dataflow does.
template <class Runner>
struct grid {
  int tp, pp;
  std::vector<std::unique_ptr<fake_collective_group>> groups;
  std::vector<std::vector<std::unique_ptr<Runner>>> shards;

  grid(const model_config& cfg, int tp_size, int pp_size) : tp(tp_size), pp(pp_size) {
    shards.resize(static_cast<size_t>(pp));
    for (int s = 0; s < pp; ++s) {
      groups.push_back(std::make_unique<fake_collective_group>(tp));
      for (int r = 0; r < tp; ++r) {
        shards[s].push_back(std::make_unique<Runner>());
        auto err = shards[s][r]->load(cfg, shard_info{r, tp, s, pp},
                                      groups.back()->endpoint(r));
        REQUIRE_MESSAGE(!err, describe(err));
      }
    }
  }

  caf::expected<model_runner_output> step(const scheduler_output& so) {
    intermediate_tensors carried;
    const intermediate_tensors* input = nullptr;
    model_runner_output out;
    for (int s = 0; s < pp; ++s) {
      std::vector<caf::expected<stage_result>> res(static_cast<size_t>(tp),
                                                   caf::expected<stage_result>{caf::error{}});
      std::vector<std::thread> threads;
      for (int r = 0; r < tp; ++r)
        threads.emplace_back([&, r] {
          cudaSetDevice(0);
          res[r] = shards[s][r]->execute(so, input);
        });
      for (auto& t : threads)
        t.join();
      for (auto& r : res)
        if (!r)
          return r.error();
      carried = res[0]->to_next;
      input = &carried;
      out = res[0]->output;
    }
    return out;
  }
};

struct generated {
  std::vector<int32_t> tokens;
  std::vector<std::vector<int32_t>> top; ///< per position: the top-5 ids
};

/// Every prompt of `expected`, the later ones joining a step after another (steps mix
/// prefill and decode), with `params` (logprobs 5 unless told otherwise).
template <class Grid>
std::vector<generated>
generate(Grid& g, const nlohmann::json& expected, sampling_params params = {}) {
  const auto prompts = expected["prompts"].get<std::vector<std::vector<int32_t>>>();
  const auto max_new = expected["max_new_tokens"].get<size_t>();
  std::vector<generated> out(prompts.size());
  size_t joined = 0;
  uint64_t step_id = 0;
  std::vector<bool> done(prompts.size(), false);
  while (true) {
    scheduler_output so;
    so.step_id = step_id++;
    for (size_t i = 0; i < joined; ++i)
      if (out[i].tokens.size() < max_new) {
        so.cached_requests.push_back({"r" + std::to_string(i), out[i].tokens.back()});
      } else if (!done[i]) {
        so.finished.push_back("r" + std::to_string(i));
        done[i] = true;
      }
    if (joined < prompts.size()) {
      so.new_requests.push_back({"r" + std::to_string(joined), prompts[joined], params});
      ++joined;
    }
    if (so.empty()) {
      if (!so.finished.empty())
        REQUIRE(g.step(so)); // frees the last KV caches: the grid serves another run
      break;
    }
    auto r = g.step(so);
    REQUIRE_MESSAGE(r, describe(r.error()));
    std::string errors;
    for (const auto& e : r->errors)
      errors += e.empty() ? "" : e + "; ";
    REQUIRE_MESSAGE(errors.empty(), "step " << so.step_id << ": " << errors);
    REQUIRE(r->req_ids.size() == so.num_requests());
    for (size_t k = 0; k < r->req_ids.size(); ++k) {
      auto& o = out[std::stoul(r->req_ids[k].substr(1))];
      o.tokens.push_back(r->sampled[k]);
      o.top.push_back(r->logprobs.empty() ? std::vector<int32_t>{} : r->logprobs[k].top_ids);
    }
  }
  return out;
}

bool contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

/// vLLM's check_logprobs_close over one prompt.
void check_close(const std::string& what, const generated& a, const generated& b) {
  REQUIRE(a.tokens.size() == b.tokens.size());
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    if (a.tokens[i] == b.tokens[i])
      continue;
    INFO(what << ": position " << i << ": " << a.tokens[i] << " against " << b.tokens[i]);
    CHECK_MESSAGE(contains(b.top[i], a.tokens[i]), "not in the other's top 5");
    CHECK_MESSAGE(contains(a.top[i], b.tokens[i]), "not in the other's top 5");
    return;
  }
}

generated from_transformers(const nlohmann::json& out) {
  generated g;
  g.tokens = out["token_ids"].get<std::vector<int32_t>>();
  for (const auto& pos : out["top"]) {
    g.top.emplace_back();
    for (const auto& e : pos)
      g.top.back().push_back(e[0].get<int32_t>());
  }
  return g;
}

model_config fixture_config(const char* name) {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = fixture_dir(name);
  cfg.kv_cache_tokens = 4096;
  return cfg;
}

sampling_params with_logprobs() {
  sampling_params p;
  p.logprobs = 5;
  return p;
}

/// Writes a Llama checkpoint of float32 random weights (uniform, scale 1/sqrt(fan-in); norms
/// near 1) with these sizes to `dir`: config.json and one model.safetensors. Head sizes the
/// fixtures do not have (their head_dim is 12) reach the grouped attention kernels.
void write_checkpoint(const std::string& dir, int hidden, int heads, int kv_heads, int inter,
                      int layers, int vocab) {
  std::filesystem::create_directories(dir);
  const int d = hidden / heads;
  nlohmann::json cfg{{"architectures", {"LlamaForCausalLM"}},
                     {"model_type", "llama"},
                     {"hidden_size", hidden},
                     {"intermediate_size", inter},
                     {"num_hidden_layers", layers},
                     {"num_attention_heads", heads},
                     {"num_key_value_heads", kv_heads},
                     {"vocab_size", vocab},
                     {"max_position_embeddings", 512},
                     {"rms_norm_eps", 1e-5},
                     {"rope_theta", 10000.0},
                     {"hidden_act", "silu"},
                     {"tie_word_embeddings", false}};
  std::ofstream{dir + "/config.json"} << cfg.dump(1);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"model.embed_tokens.weight", {vocab, hidden}});
  for (int l = 0; l < layers; ++l) {
    const auto p = "model.layers." + std::to_string(l) + ".";
    shapes.push_back({p + "input_layernorm.weight", {hidden}});
    shapes.push_back({p + "post_attention_layernorm.weight", {hidden}});
    shapes.push_back({p + "self_attn.q_proj.weight", {heads * d, hidden}});
    shapes.push_back({p + "self_attn.k_proj.weight", {kv_heads * d, hidden}});
    shapes.push_back({p + "self_attn.v_proj.weight", {kv_heads * d, hidden}});
    shapes.push_back({p + "self_attn.o_proj.weight", {hidden, heads * d}});
    shapes.push_back({p + "mlp.gate_proj.weight", {inter, hidden}});
    shapes.push_back({p + "mlp.up_proj.weight", {inter, hidden}});
    shapes.push_back({p + "mlp.down_proj.weight", {hidden, inter}});
  }
  shapes.push_back({"model.norm.weight", {hidden}});
  shapes.push_back({"lm_head.weight", {vocab, hidden}});
  nlohmann::json header = nlohmann::json::object();
  std::vector<float> data;
  std::mt19937 rng{42};
  for (const auto& [name, shape] : shapes) {
    int64_t count = 1;
    for (auto n : shape)
      count *= n;
    const auto begin = data.size() * 4;
    const bool norm = shape.size() == 1;
    const float scale = norm ? 0.1f
                             : (name.find("embed") != std::string::npos
                                  ? 1.0f
                                  : 2.0f / std::sqrt(static_cast<float>(shape[1])));
    std::uniform_real_distribution<float> u{-scale, scale};
    for (int64_t i = 0; i < count; ++i)
      data.push_back((norm ? 1.0f : 0.0f) + u(rng));
    header[name] = {{"dtype", "F32"},
                    {"shape", shape},
                    {"data_offsets", {begin, data.size() * 4}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  std::ofstream out{dir + "/model.safetensors", std::ios::binary};
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * 4));
}

} // namespace

TEST_CASE("hf on CUDA is logprob-close to transformers and to the CPU runner") {
  CAFEX_REQUIRE_GPUS(1);
  const std::pair<int, int> shapes[] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}, {4, 1}};
  for (const char* name : fixtures) {
    CAPTURE(name);
    auto expected = read_json(fixture_dir(name) + "/expected.json");
    auto cfg = fixture_config(name);
    grid<hf::llama_model> cpu{cfg, 1, 1};
    auto on_cpu = generate(cpu, expected, with_logprobs());
    auto hf = hf::load_hf_config(cfg.path);
    REQUIRE(hf);
    for (auto [tp, pp] : shapes) {
      if (hf::check_tp(*hf, tp) || pp > hf->num_layers)
        continue; // the fixture does not shard that way
      CAPTURE(tp);
      CAPTURE(pp);
      grid<cuda_llama_model> gpu{cfg, tp, pp};
      auto got = generate(gpu, expected, with_logprobs());
      for (size_t i = 0; i < got.size(); ++i) {
        const auto what = std::string(name) + " prompt " + std::to_string(i);
        check_close(what + " vs transformers", got[i],
                    from_transformers(expected["outputs"][i]));
        check_close(what + " vs cpu", got[i], on_cpu[i]);
      }
      // Greedy without logprobs takes the GPU's argmax: the same tokens.
      auto argmax = generate(gpu, expected);
      for (size_t i = 0; i < got.size(); ++i)
        CHECK(argmax[i].tokens == got[i].tokens);
      // Decode steps replayed CUDA graphs where the collective allows them (tp 1 here:
      // the fake collective is a host one).
      const auto& shard = *gpu.shards[0][0];
      CHECK_MESSAGE(shard.graphs_note().empty(), shard.graphs_note());
      CHECK((tp == 1) == (shard.graphs() > 0));
    }
  }
}

TEST_CASE(
  "hf on CUDA: a seed gives the same tokens twice; a full KV cache fails one request") {
  CAFEX_REQUIRE_GPUS(1);
  auto expected = read_json(fixture_dir("llama_gqa") + "/expected.json");
  auto cfg = fixture_config("llama_gqa");
  sampling_params p;
  p.temperature = 0.9f;
  p.top_k = 20;
  p.seed = 7;
  std::vector<std::vector<int32_t>> runs;
  for (int k = 0; k < 2; ++k) {
    grid<cuda_llama_model> g{cfg, 1, 1};
    auto got = generate(g, expected, p);
    runs.push_back(got[0].tokens);
  }
  CHECK(runs[0] == runs[1]);

  cfg.kv_cache_tokens = 16; // one block
  grid<cuda_llama_model> small{cfg, 1, 1};
  scheduler_output so;
  so.new_requests.push_back({"fits", {1, 2, 3}});
  so.new_requests.push_back({"too-long", std::vector<int32_t>(20, 5)});
  auto r = small.step(so);
  REQUIRE_MESSAGE(r, describe(r.error()));
  REQUIRE(r->errors.size() == 2);
  CHECK(r->errors[0].empty());
  CHECK(r->sampled[0] >= 0);
  CHECK_MESSAGE(r->errors[1].find("request 'too-long': the KV cache is full") == 0,
                r->errors[1]);
  CHECK(r->sampled[1] == -1);
  CHECK(small.shards[0][0]->live_requests() == 1);
}

TEST_CASE("hf on CUDA: decode graphs give the eager steps' tokens and logprobs") {
  CAFEX_REQUIRE_GPUS(1);
  for (const char* name : {"llama_gqa", "qwen2_bias_bf16"}) {
    CAPTURE(name);
    auto expected = read_json(fixture_dir(name) + "/expected.json");
    auto cfg = fixture_config(name);
    cfg.enforce_eager = true;
    grid<cuda_llama_model> eager{cfg, 1, 2};
    auto a = generate(eager, expected, with_logprobs());
    CHECK(eager.shards[1][0]->graphs() == 0);
    cfg.enforce_eager = false;
    grid<cuda_llama_model> graphed{cfg, 1, 2};
    auto b = generate(graphed, expected, with_logprobs());
    CHECK(graphed.shards[1][0]->graphs() > 0);
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].tokens == b[i].tokens);
      CHECK(a[i].top == b[i].top);
    }
  }
}

TEST_CASE("hf on CUDA: head sizes 32, 64 and 128 are logprob-close to the CPU runner") {
  CAFEX_REQUIRE_GPUS(1);
  const auto root = std::filesystem::temp_directory_path()
                    / ("cafex-cuda-llama-" + std::to_string(::getpid()));
  nlohmann::json prompts{
    {"prompts", {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, {400, 7}, {5}}},
    {"max_new_tokens", 40}};
  for (int d : {32, 64, 128}) {
    CAPTURE(d);
    const auto dir = (root / ("d" + std::to_string(d))).string();
    write_checkpoint(dir, 4 * d, 4, 2, 256, 2, 500);
    model_config cfg;
    cfg.name = "hf";
    cfg.path = dir;
    cfg.kv_cache_tokens = 4096;
    grid<hf::llama_model> cpu{cfg, 1, 1};
    auto want = generate(cpu, prompts, with_logprobs());
    for (auto [tp, pp] : {std::pair{1, 1}, {2, 1}, {1, 2}}) {
      CAPTURE(tp);
      CAPTURE(pp);
      grid<cuda_llama_model> gpu{cfg, tp, pp};
      auto got = generate(gpu, prompts, with_logprobs());
      for (size_t i = 0; i < got.size(); ++i)
        check_close("prompt " + std::to_string(i), got[i], want[i]);
    }
  }
  std::filesystem::remove_all(root);
}

TEST_CASE("hf on CUDA: random weights from config.json alone") {
  CAFEX_REQUIRE_GPUS(1);
  auto cfg = fixture_config("llama3_tied_sharded");
  cfg.random_weights = true;
  cfg.seed = 3;
  grid<cuda_llama_model> g{cfg, 1, 1};
  CHECK(g.shards[0][0]->weight_bytes() > 0);
  scheduler_output so;
  so.new_requests.push_back({"a", {1, 2, 3, 4}});
  auto r = g.step(so);
  REQUIRE_MESSAGE(r, describe(r.error()));
  REQUIRE(r->sampled.size() == 1);
  CHECK(r->sampled[0] >= 0);
  CHECK(r->sampled[0] < g.shards[0][0]->config().vocab_size);
}
