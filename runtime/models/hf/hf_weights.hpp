// One shard's weights of a Llama-family checkpoint, sharded as vLLM does: q/k/v and
// gate/up column-parallel (by heads; KV heads replicated when TP exceeds them), o_proj and
// down_proj row-parallel, embedding and LM head vocab-parallel (padded to equal slices).
// Each rank reads only its slices from the mapped files and converts them to float32.
#pragma once

#include <string>
#include <vector>

#include <caf/error.hpp>

#include "runtime/models/hf/hf_config.hpp"
#include "runtime/models/hf/weight_buffer.hpp"
#include "runtime/models/model_runner.hpp"

namespace cafex::hf {

/// Which slices one TP rank owns.
struct tp_slices {
  int q_heads = 0;    ///< local query heads
  int q_head0 = 0;    ///< first global query head
  int kv_heads = 0;   ///< local KV heads (1 when replicated)
  int kv_head0 = 0;   ///< first global KV head
  int64_t inter = 0;  ///< local intermediate columns
  int64_t inter0 = 0; ///< first global intermediate column
  int64_t vocab = 0;  ///< rows of the vocab slice (padded: the same on every rank)
  int64_t vocab0 = 0; ///< first global token of the slice
};

/// The slices of `tp_rank` of `tp_size` (check_tp must hold).
tp_slices slices_of(const hf_config& cfg, int tp_rank, int tp_size);

/// Row-major float32 matrices in nn.Linear's [out x in] layout.
struct hf_layer_weights {
  weight_buffer attn_norm; ///< [hidden]
  weight_buffer mlp_norm;  ///< [hidden]
  weight_buffer wqkv;      ///< [(q + 2 kv) * head_dim x hidden]: local q | k | v rows
  weight_buffer bqkv;      ///< the same rows' biases (empty without)
  weight_buffer wo;        ///< [hidden x q * head_dim]: local input columns
  weight_buffer bo;        ///< [hidden] on TP rank 0 only (added once per sum)
  weight_buffer wgu;       ///< [2 * inter x hidden]: local gate rows | up rows
  weight_buffer wdown;     ///< [hidden x inter]: local input columns
};

struct hf_shard_weights {
  weight_buffer embed;      ///< [vocab slice x hidden], first stage only
  weight_buffer final_norm; ///< [hidden], last stage only
  weight_buffer lm_head;    ///< [vocab slice x hidden], last stage only
  std::vector<hf_layer_weights> layers;
};

/// Reads the shard's weights from the checkpoint in `dir` (layers [first, first + count)
/// of the stage). errc::invalid_config naming the file and the tensor when one is missing,
/// misshapen or malformed. Releases the mapped pages after copying.
caf::expected<hf_shard_weights> load_shard_weights(const std::string& dir,
                                                   const hf_config& cfg,
                                                   const shard_info& shard, pp_layers layers);

} // namespace cafex::hf
