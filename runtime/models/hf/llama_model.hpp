// The "hf" model runner: Llama, Mistral and Qwen2 checkpoints in Hugging Face's format,
// computed in float32 on the CPU (OpenBLAS), one shard of TP x PP as vLLM shards them
// (hf_weights.hpp). Per layer, as transformers' modeling_llama: RMSNorm -> q/k/v (Qwen2:
// with bias) -> rotary embedding (default or llama3) -> causal attention over the
// request's KV cache (GQA; Mistral: sliding window) -> o_proj, all-reduced -> residual ->
// RMSNorm -> down(silu(gate) * up), all-reduced -> residual. The last stage applies the
// final norm, the vocab-parallel LM head (logits all-gathered) and each request's
// sampler (sampling.hpp; greedy by default).
//
// KV cache: a budget of model_config::kv_cache_tokens tokens per shard (default: what 4 GiB
// of float32 keys and values hold, as vLLM's CPU backend reserves). Requests are
// admitted in scheduler order, running ones first; one that does not fit (or is unknown,
// too long, or has a token outside the vocabulary) fails alone, with its error in
// model_runner_output::errors, and every stage decides the same.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/models/hf/hf_config.hpp"
#include "runtime/models/hf/hf_weights.hpp"
#include "runtime/models/hf/step_admission.hpp"
#include "runtime/models/model_runner.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex::hf {

class llama_model final : public model_runner {
public:
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override;

  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override;

  size_t live_requests() const override { return cache_.size(); }

  bool drop_requests() override {
    cache_.clear();
    cached_tokens_ = 0;
    return true;
  }

  const hf_config& config() const { return hf_; }
  pp_layers layers() const { return layers_; }

private:
  struct kv_entry {
    int64_t len = 0;
    sampling_params sampling;
    uint64_t seed = 0;      ///< sampling.seed, or default_seed(id)
    int64_t prompt_len = 0; ///< tokens of its prompt (min_tokens counts after them)
    /// Per local layer: [len x kv_heads x head_dim] keys and values.
    std::vector<std::vector<float>> k, v;
  };
  struct step_row {
    kv_entry* kv = nullptr;
    int64_t row0 = 0, count = 0, pos0 = 0;
  };

  /// Which requests of `step` run: fills rows_, errors_ (per request, "" when admitted).
  caf::error admit(const scheduler_output& step);
  void embed_tokens(const scheduler_output& step);
  caf::error attention(int l);
  void attend(int l, const step_row& r);
  caf::error mlp(int l);
  caf::error all_reduce(const char* what, int l);
  caf::error sample(model_runner_output& out);
  void rollback();
  void commit();

  model_config cfg_;
  hf_config hf_;
  shard_info shard_;
  collective* tp_ = nullptr;
  bool loaded_ = false;
  pp_layers layers_;
  tp_slices s_;
  hf_shard_weights w_;
  std::vector<float> inv_freq_;
  int64_t budget_ = 0;
  int64_t max_len_ = 0;

  std::unordered_map<std::string, kv_entry> cache_;
  int64_t cached_tokens_ = 0; ///< committed KV rows of every request

  // Per step.
  std::vector<step_row> rows_;
  std::vector<int32_t> row_tokens_;   ///< the admitted requests' tokens, concatenated
  step_admission admission_;          ///< who runs this step, and why not
  std::vector<std::string> inserted_; ///< new ids admitted this step
  int64_t tokens_ = 0;
  sampler_scratch sampler_;
  std::vector<float> cos_, sin_; ///< rotary angles of the position being embedded
  std::vector<float> x_, xn_, qkv_, attn_, part_, gu_, scores_, logits_, gathered_;
};

} // namespace cafex::hf
