// The reference model: a small decoder-only transformer on CPU (OpenBLAS), sharded over
// TP ranks and PP stages, whose tokens and hidden states are bit-identical for every
// (tp, pp). It is what tests, examples and CPU benchmarks run.
//
// Layout (per layer): RMSNorm -> causal multi-head self-attention with a per-request KV
// cache -> residual add -> RMSNorm -> MLP (up, SiLU, down) -> residual add. Stage 0 embeds
// tokens and adds a sinusoidal position encoding; the last stage applies the final
// RMSNorm, the (replicated) LM head and each request's sampler (sampling.hpp: greedy
// argmax by default, ties -> lowest token id).
//
// Why it is exact for every TP size: each head's output projection and each MLP block's
// down projection is its own gemm of the same shape whatever the TP size; each
// contribution is rounded to int64 fixed point (x * 2^24, see tensor_math.hpp) and the
// integers are summed, locally and then with collective::all_reduce_sum. Integer addition
// is associative, so the sum does not depend on which rank owns which head or block.
// Everything else (norms, embeddings, LM head, one head's attention) is computed the same
// way on every shard. Weights come from a counter-based generator keyed by (seed, tensor,
// element), so a shard generates exactly its slice.
//
// Threading: one thread drives a shard. OpenBLAS threads are the caller's business
// (OPENBLAS_NUM_THREADS / openblas_set_num_threads); nothing global is set here.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/models/model_runner.hpp"
#include "runtime/models/reference_weights.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex {

/// The "reference" model runner. See the top of this file.
class reference_model final : public model_runner {
public:
  /// Validates `cfg` and `shard` (check_reference_config) and generates this shard's
  /// weights (make_shard_weights). errc::invalid_argument naming what is wrong;
  /// errc::model_failed when the weights do not fit. Reloading drops all requests.
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override;

  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override;

  size_t live_requests() const override { return cache_.size(); }

  bool drop_requests() override {
    cache_.clear();
    return true;
  }

  /// The layers this shard runs (valid after load()).
  layer_range layers() const { return layers_; }

private:
  /// KV cache of one request: per (local layer, local head), `len` rows of head_dim.
  struct kv_entry {
    int64_t len = 0;
    sampling_params sampling; ///< the request's, for its whole life
    uint64_t seed = 0;        ///< sampling.seed, or default_seed(id)
    int64_t prompt_len = 0;   ///< min_tokens counts the tokens after it
    std::vector<std::vector<float>> k;
    std::vector<std::vector<float>> v;
  };

  /// One request of the running step: its rows in the step's token matrix.
  struct step_row {
    kv_entry* kv = nullptr;
    int64_t row0 = 0;  ///< first row in the token matrix
    int64_t count = 0; ///< tokens this step
    int64_t pos0 = 0;  ///< position of its first token (= committed KV length)
  };

  caf::error validate(const scheduler_output& step, const intermediate_tensors* input,
                      int64_t& num_tokens) const;
  void plan(const scheduler_output& step);
  void embed(const scheduler_output& step);
  caf::error attention(int local_layer);
  caf::error mlp(int local_layer);
  void attend_one_head(int local_layer, int head, const step_row& r);
  caf::error reduce(const char* what, int local_layer);
  void sample(const scheduler_output& step, model_runner_output& out);
  void rollback();
  void commit();

  model_config cfg_;
  shard_info shard_;
  collective* tp_ = nullptr;
  bool loaded_ = false;
  layer_range layers_;
  int head_dim_ = 0;
  int local_heads_ = 0;
  int block_ = 0; ///< columns per MLP block
  int local_blocks_ = 0;
  bool first_stage_ = true;
  bool last_stage_ = true;

  shard_weights w_;
  std::vector<double> pos_freqs_;

  std::unordered_map<std::string, kv_entry> cache_;

  // Per-step state and scratch, kept to avoid reallocations between steps.
  std::vector<step_row> rows_;
  std::vector<std::string> inserted_; ///< new request ids of the running step
  int64_t tokens_ = 0;
  std::vector<float> x_;      ///< residual stream [tokens x hidden]
  std::vector<float> xn_;     ///< normed residual [tokens x hidden]
  std::vector<float> qkv_;    ///< one head [tokens x 3*head_dim]
  std::vector<float> attn_;   ///< one head's output [tokens x head_dim]
  std::vector<float> scores_; ///< [query chunk x positions]
  std::vector<float> part_;   ///< one contribution [tokens x hidden]
  std::vector<float> up_;     ///< one MLP block [tokens x block]
  std::vector<int64_t> acc_;  ///< fixed-point sum [tokens x hidden]
  std::vector<float> logits_; ///< [requests x vocab]
  sampler_scratch sampler_;
};

} // namespace cafex
