// The reference model's shape rules and weights, as pure functions: which layers a PP
// stage owns, whether a (config, shard) pair is valid, and the weights of one shard.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>

#include "runtime/models/collective.hpp"
#include "runtime/models/model_runner.hpp"

namespace cafex {

/// The global layers [first, first + count) one PP stage owns.
struct layer_range {
  int first = 0;
  int count = 0;
};

/// Splits `num_layers` over `pp_size` stages as evenly as possible; earlier stages get the
/// extra layers (10 layers over 4 stages: 3, 3, 2, 2; 4 over 3: 2, 1, 1). Any pp_size >= 1
/// is allowed: stages beyond the layer count get none and pass hidden states through
/// (stage 0 still embeds, the last stage still samples).
layer_range stage_layers(int num_layers, int pp_size, int pp_rank);

/// Checks sizes > 0 (num_layers >= 0), hidden % heads, ffn % blocks, heads % tp,
/// blocks % tp, ranks in range and `tp` matching the shard. errc::invalid_argument
/// naming what is wrong and what to do.
caf::error check_reference_config(const model_config& cfg, const shard_info& shard,
                                  const collective& tp);

/// Checks one step against a shard (`who` names the model in messages): new prompts
/// non-empty, within max_seq_len and not live yet; cached requests live (`live_len(id)`
/// is the committed KV length, or -1 when the id is unknown) with room for one more
/// token; tokens inside the vocabulary; no id twice; and on later stages an `input` of
/// exactly [num_tokens x hidden]. Sets `num_tokens` to the step's token count.
/// errc::invalid_argument naming the request and what to do.
caf::error check_reference_step(const model_config& cfg, const shard_info& shard,
                                const char* who, const scheduler_output& step,
                                const intermediate_tensors* input,
                                const std::function<int64_t(const std::string&)>& live_len,
                                int64_t& num_tokens);

/// One layer's weights on one TP rank: only its heads and MLP blocks, each stored as its
/// own row-major matrix so that every per-head / per-block gemm has the same shape
/// whatever the TP size.
struct layer_weights {
  std::vector<float> attn_norm; ///< [hidden]
  std::vector<float> mlp_norm;  ///< [hidden]
  std::vector<float> wqkv;      ///< per local head [hidden x 3*head_dim]: Q | K | V
  std::vector<float> wo;        ///< per local head [head_dim x hidden]
  std::vector<float> wup;       ///< per local block [hidden x block]
  std::vector<float> wdown;     ///< per local block [block x hidden]
};

/// The weights of one shard.
struct shard_weights {
  std::vector<float> embed;          ///< [vocab x hidden], stage 0 only
  std::vector<float> final_norm;     ///< [hidden], last stage only
  std::vector<float> lm_head;        ///< [hidden x vocab], last stage only (replicated on TP)
  std::vector<layer_weights> layers; ///< the stage's layers, in order
};

/// Generates the weights of `shard` from cfg.seed. Counter-based (splitmix64 keyed by
/// seed, tensor id and element index; tensor ids name the global layer, the kind and the
/// global head or block), so every shard produces exactly its slice of one model.
/// Uniform values with std 1/sqrt(fan_in) (embedding: 1; LM head: 4/sqrt(hidden) for
/// clear argmax margins; norm gains 1 +- 0.17). Expects a checked config.
shard_weights make_shard_weights(const model_config& cfg, const shard_info& shard);

} // namespace cafex
