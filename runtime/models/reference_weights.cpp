#include "runtime/models/reference_weights.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/models/sampling.hpp"
#include "runtime/models/tensor_math.hpp"

namespace cafex {

namespace {

// Tensor ids of the weight generator: (global layer + 1) << 40 | kind << 32 | head/block.
// Model-wide tensors use layer -1. Ids never depend on TP or PP, so shards agree.
enum tensor_kind : uint64_t {
  k_attn_norm = 1,
  k_wqkv,
  k_wo,
  k_mlp_norm,
  k_wup,
  k_wdown,
  k_embed,
  k_lm_head,
  k_final_norm,
};

uint64_t tensor_id(int layer, tensor_kind kind, int sub = 0) {
  return (static_cast<uint64_t>(layer + 1) << 40) | (static_cast<uint64_t>(kind) << 32)
         | static_cast<uint32_t>(sub);
}

// Norm gains: 1 +- a little, so they are not trivially the identity.
std::vector<float> norm_gain(uint64_t seed, uint64_t id, int hidden) {
  std::vector<float> g(static_cast<size_t>(hidden));
  fill_weights(g.data(), g.size(), seed, id, 0, 0.1f);
  for (auto& x : g)
    x += 1.0f;
  return g;
}

// Logits get a standard deviation of about 4 so greedy argmax has clear margins.
constexpr float lm_head_gain = 4.0f;

} // namespace

layer_range stage_layers(int num_layers, int pp_size, int pp_rank) {
  const int base = num_layers / pp_size;
  const int extra = num_layers % pp_size;
  return {pp_rank * base + std::min(pp_rank, extra), base + (pp_rank < extra ? 1 : 0)};
}

caf::error check_reference_config(const model_config& cfg, const shard_info& shard,
                                  const collective& tp) {
  auto bad = [&](const std::string& what) {
    return make_error(errc::invalid_argument,
                      fmt::format("reference model (tp rank {}, pp rank {}): {}",
                                  shard.tp_rank, shard.pp_rank, what));
  };
  if (cfg.vocab_size <= 0 || cfg.hidden_size <= 0 || cfg.num_heads <= 0 || cfg.ffn_size <= 0
      || cfg.ffn_blocks <= 0 || cfg.max_seq_len <= 0 || cfg.num_layers < 0)
    return bad("vocab_size, hidden_size, num_heads, ffn_size, ffn_blocks and max_seq_len "
               "must be > 0 and num_layers >= 0: fix the model config");
  if (cfg.hidden_size % cfg.num_heads != 0)
    return bad(fmt::format("hidden_size {} is not divisible by num_heads {}: pick sizes "
                           "with hidden_size = num_heads * head_dim",
                           cfg.hidden_size, cfg.num_heads));
  if (cfg.ffn_size % cfg.ffn_blocks != 0)
    return bad(fmt::format("ffn_size {} is not divisible by ffn_blocks {}: pick sizes with "
                           "ffn_size = ffn_blocks * block",
                           cfg.ffn_size, cfg.ffn_blocks));
  if (shard.tp_size < 1 || shard.tp_rank < 0 || shard.tp_rank >= shard.tp_size
      || shard.pp_size < 1 || shard.pp_rank < 0 || shard.pp_rank >= shard.pp_size)
    return bad(fmt::format("shard out of range (tp {}/{}, pp {}/{}): ranks must lie in "
                           "[0, size) and sizes be >= 1",
                           shard.tp_rank, shard.tp_size, shard.pp_rank, shard.pp_size));
  if (cfg.num_heads % shard.tp_size != 0 || cfg.ffn_blocks % shard.tp_size != 0)
    return bad(fmt::format("num_heads {} and ffn_blocks {} must both be divisible by the "
                           "TP size {}: choose a TP size that divides both",
                           cfg.num_heads, cfg.ffn_blocks, shard.tp_size));
  if (tp.size() != shard.tp_size || tp.rank() != shard.tp_rank)
    return bad(fmt::format("the TP collective is rank {} of {} but the shard says rank {} "
                           "of {}: pass the collective of this shard's TP group",
                           tp.rank(), tp.size(), shard.tp_rank, shard.tp_size));
  return caf::none;
}

caf::error check_reference_step(const model_config& cfg, const shard_info& shard,
                                const char* who, const scheduler_output& step,
                                const intermediate_tensors* input,
                                const std::function<int64_t(const std::string&)>& live_len,
                                int64_t& num_tokens) {
  auto bad = [&](const std::string& what) {
    return make_error(errc::invalid_argument,
                      fmt::format("{} (tp rank {}, pp rank {}), step {}: {}", who,
                                  shard.tp_rank, shard.pp_rank, step.step_id, what));
  };
  auto check_token = [&](const std::string& id, int32_t t) -> caf::error {
    if (t < 0 || t >= cfg.vocab_size)
      return bad(fmt::format("request '{}' has token {} outside [0, {}): send ids of "
                             "this model's vocabulary",
                             id, t, cfg.vocab_size));
    return caf::none;
  };
  std::unordered_set<std::string> seen;
  num_tokens = 0;
  for (const auto& r : step.new_requests) {
    if (r.prompt.empty())
      return bad(fmt::format("new request '{}' has an empty prompt: send at least one "
                             "token",
                             r.req_id));
    if (live_len(r.req_id) >= 0 || !seen.insert(r.req_id).second)
      return bad(fmt::format("new request '{}' is already live: finish it first or use "
                             "a fresh id",
                             r.req_id));
    if (static_cast<int64_t>(r.prompt.size()) > cfg.max_seq_len)
      return bad(fmt::format("new request '{}' has {} prompt tokens, over max_seq_len "
                             "{}: shorten it or raise max_seq_len",
                             r.req_id, r.prompt.size(), cfg.max_seq_len));
    for (auto t : r.prompt)
      if (auto err = check_token(r.req_id, t))
        return err;
    if (auto why = check_sampling(r.sampling, cfg.vocab_size); !why.empty())
      return bad(fmt::format("new request '{}': {}", r.req_id, why));
    num_tokens += static_cast<int64_t>(r.prompt.size());
  }
  for (const auto& r : step.cached_requests) {
    const int64_t len = live_len(r.req_id);
    if (len < 0)
      return bad(fmt::format("cached request '{}' is unknown: schedule it as a new "
                             "request first (or it already finished)",
                             r.req_id));
    if (!seen.insert(r.req_id).second)
      return bad(fmt::format("request '{}' appears twice in the step", r.req_id));
    if (len + 1 > cfg.max_seq_len)
      return bad(fmt::format("request '{}' would grow past max_seq_len {}: finish it",
                             r.req_id, cfg.max_seq_len));
    if (auto err = check_token(r.req_id, r.token))
      return err;
    ++num_tokens;
  }
  if (shard.pp_rank == 0 || num_tokens == 0)
    return caf::none;
  if (input == nullptr)
    return bad("no hidden states from the previous stage: pass its to_next");
  const auto h = static_cast<int64_t>(cfg.hidden_size);
  if (input->num_tokens != num_tokens || input->hidden_size != h
      || static_cast<int64_t>(input->hidden.size()) != num_tokens * h)
    return bad(fmt::format("input is [{} x {}] with {} values but the step needs "
                           "[{} x {}]: pass the previous stage's output of the same step",
                           input->num_tokens, input->hidden_size, input->hidden.size(),
                           num_tokens, h));
  return caf::none;
}

shard_weights make_shard_weights(const model_config& cfg, const shard_info& shard) {
  const auto layers = stage_layers(cfg.num_layers, shard.pp_size, shard.pp_rank);
  const int h = cfg.hidden_size;
  const size_t hs = static_cast<size_t>(h);
  const size_t d = static_cast<size_t>(h / cfg.num_heads);
  const size_t fb = static_cast<size_t>(cfg.ffn_size / cfg.ffn_blocks);
  const int local_heads = cfg.num_heads / shard.tp_size;
  const int local_blocks = cfg.ffn_blocks / shard.tp_size;
  const float std_h = 1.0f / std::sqrt(static_cast<float>(h));
  const float std_f = 1.0f / std::sqrt(static_cast<float>(cfg.ffn_size));
  const uint64_t seed = cfg.seed;
  shard_weights out;
  if (shard.pp_rank == 0) {
    out.embed.resize(static_cast<size_t>(cfg.vocab_size) * hs);
    fill_weights(out.embed.data(), out.embed.size(), seed, tensor_id(-1, k_embed), 0, 1.0f);
  }
  if (shard.pp_rank == shard.pp_size - 1) {
    out.final_norm = norm_gain(seed, tensor_id(-1, k_final_norm), h);
    out.lm_head.resize(hs * static_cast<size_t>(cfg.vocab_size));
    fill_weights(out.lm_head.data(), out.lm_head.size(), seed, tensor_id(-1, k_lm_head), 0,
                 lm_head_gain * std_h);
  }
  out.layers.resize(static_cast<size_t>(layers.count));
  for (int l = 0; l < layers.count; ++l) {
    const int g = layers.first + l; // global layer index
    auto& w = out.layers[static_cast<size_t>(l)];
    w.attn_norm = norm_gain(seed, tensor_id(g, k_attn_norm), h);
    w.mlp_norm = norm_gain(seed, tensor_id(g, k_mlp_norm), h);
    w.wqkv.resize(static_cast<size_t>(local_heads) * hs * 3 * d);
    w.wo.resize(static_cast<size_t>(local_heads) * d * hs);
    for (int i = 0; i < local_heads; ++i) {
      const int gh = shard.tp_rank * local_heads + i; // global head index
      fill_weights(&w.wqkv[i * hs * 3 * d], hs * 3 * d, seed, tensor_id(g, k_wqkv, gh), 0,
                   std_h);
      fill_weights(&w.wo[i * d * hs], d * hs, seed, tensor_id(g, k_wo, gh), 0, std_h);
    }
    w.wup.resize(static_cast<size_t>(local_blocks) * hs * fb);
    w.wdown.resize(static_cast<size_t>(local_blocks) * fb * hs);
    for (int b = 0; b < local_blocks; ++b) {
      const int gb = shard.tp_rank * local_blocks + b; // global block index
      fill_weights(&w.wup[b * hs * fb], hs * fb, seed, tensor_id(g, k_wup, gb), 0, std_h);
      fill_weights(&w.wdown[b * fb * hs], fb * hs, seed, tensor_id(g, k_wdown, gb), 0, std_f);
    }
  }
  return out;
}

} // namespace cafex
