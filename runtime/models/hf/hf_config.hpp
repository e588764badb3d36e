// A Hugging Face decoder-only checkpoint's config.json (and generation_config.json), read
// into one struct, and the rules that say whether a TP x PP shape can shard it. Pure: no
// weights, no model. Everything outside what the runner implements is refused here, by
// field and value, so a rank never starts computing a model it would get wrong.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

namespace cafex::hf {

enum class architecture : uint8_t { llama, mistral, qwen2 };

const char* to_string(architecture a);

/// Rotary embedding: "default" or Llama 3's frequency scaling.
struct rope_config {
  enum class kind : uint8_t { plain, llama3 } type = kind::plain;
  double theta = 10000.0;
  double factor = 1.0; ///< llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
};

struct hf_config {
  architecture arch = architecture::llama;
  std::string arch_name; ///< as config.json spells it ("LlamaForCausalLM")
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  int64_t max_position = 0; ///< max_position_embeddings
  bool tie_word_embeddings = false;
  bool qkv_bias = false;      ///< Qwen2 always; Llama with attention_bias
  bool o_bias = false;        ///< Llama with attention_bias
  int64_t sliding_window = 0; ///< Mistral's window in tokens; 0: none
  rope_config rope;
  std::vector<int32_t> eos_token_ids; ///< config.json and generation_config.json together
  int32_t bos_token_id = -1;
};

/// Parses config.json's object. errc::invalid_config naming the field and its value for
/// another architecture, a missing or non-positive size, an unsupported rope type, an
/// activation other than silu, a quantisation_config, biases the runner does not have.
caf::expected<hf_config> parse_hf_config(const nlohmann::json& j);

/// Adds generation_config.json's eos_token_id (a number or a list) to `cfg`.
caf::error merge_generation_config(const nlohmann::json& j, hf_config& cfg);

/// Reads DIR/config.json and, when present, DIR/generation_config.json. Errors name the
/// file.
caf::expected<hf_config> load_hf_config(const std::string& dir);

/// Whether `tp` ranks can shard the model as vLLM does: heads % tp, and either
/// kv_heads % tp (each rank its own KV heads) or tp % kv_heads (KV heads replicated), and
/// intermediate_size % tp. errc::invalid_argument naming the sizes.
caf::error check_tp(const hf_config& cfg, int tp);

/// vLLM's get_pp_indices: the layers [first, first + count) of `pp_rank`. Without a
/// partition, num_layers / pp_size each, and the remainder one each to the stages before
/// the last, from the second-to-last backwards. `partition` (VLLM_PP_LAYER_PARTITION,
/// "--pp-layer-partition 3,5"): the layers per stage, which must be pp_size numbers that
/// sum to num_layers.
struct pp_layers {
  int first = 0;
  int count = 0;
};
caf::expected<pp_layers> pp_indices(int num_layers, int pp_rank, int pp_size,
                                    const std::vector<int>& partition);

/// "3,5" -> {3, 5}. errc::invalid_argument naming the text for anything that is not a
/// comma-separated list of non-negative integers.
caf::expected<std::vector<int>> parse_layer_partition(const std::string& text);

/// Inverse frequencies of the rotary embedding, one per pair of a head's dimensions, in
/// float32 as transformers computes them (and scaled for llama3).
std::vector<float> rope_inv_freq(const rope_config& rope, int64_t head_dim);

} // namespace cafex::hf
