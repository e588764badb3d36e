// The shape and seed of a model, and its one JSON form (init_worker's "model" entry, and
// what a host may read from a config file). Public: executor_options holds one.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace cafex {

/// Shape and seed of a model. Every shard of the same config computes the same function.
struct model_config {
  std::string name = "reference";
  uint64_t seed = 0;
  int vocab_size = 512;
  int hidden_size = 128;
  int num_heads = 8;          ///< must be divisible by the TP size
  int num_layers = 4;         ///< split over PP stages; may be 0 (overhead benchmarks)
  int ffn_size = 512;         ///< MLP width; split into `ffn_blocks` equal blocks
  int ffn_blocks = 8;         ///< must be divisible by the TP size
  int max_seq_len = 4096;     ///< per request, prompt plus generated tokens
  bool return_hidden = false; ///< fill model_runner_output::hidden
  /// "hf": a Hugging Face checkpoint directory (config.json, *.safetensors); the shape
  /// fields above are then read from its config.json and ignored here.
  std::string path;
  /// "hf": tokens of KV cache each shard holds for all its requests together; a request
  /// that does not fit fails alone (0: on the CPU what 4 GiB of float32 KV holds on the
  /// shard, as vLLM's CPU backend reserves by default; on a GPU what half the device
  /// memory left free by the weights holds).
  int64_t kv_cache_tokens = 0;
  /// "hf" on CUDA: draw bfloat16 weights on the GPU from `seed` instead of reading
  /// *.safetensors (config.json alone sets the shape): benchmarks of a model's shape
  /// without its download. The CPU runner refuses it.
  bool random_weights = false;
  /// "hf" on CUDA: run decode steps eagerly instead of replaying CUDA graphs (vLLM's
  /// --enforce-eager).
  bool enforce_eager = false;
  /// "hf": layers per PP stage ("3,5"; VLLM_PP_LAYER_PARTITION); empty: vLLM's rule.
  std::string pp_layer_partition;
};

/// {"name": .., "seed": .., "vocab_size": .., ...}: every field by its name.
void to_json(nlohmann::json& j, const model_config& m);

/// The inverse of to_json. A missing field keeps the value it has in `m` (the default
/// through `j.get<model_config>()`), so a hand-written entry may name only what differs.
/// Throws nlohmann::json::exception on a field of the wrong type (callers catch it).
void from_json(const nlohmann::json& j, model_config& m);

} // namespace cafex
