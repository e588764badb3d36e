// The hf runner on one GPU (CUDA builds only): Llama, Mistral and Qwen2 checkpoints in
// bfloat16, one shard of TP x PP sharded exactly as the CPU runner shards them
// (hf_weights.hpp), so the two agree to bfloat16 rounding. Registered as "hf-cuda"; a
// worker whose device is cuda resolves "hf" to it.
//
// Numerics: weights and every matrix input in bfloat16, products accumulated in float32
// (cublasGemmEx), the residual stream, norms, rotary angles, softmax and logits in
// float32; the KV cache in bfloat16.
//
// Per step, on one stream: tokens, row descriptors and block tables go up in one copy;
// stage 0 embeds (vocab-parallel, summed over TP), later stages upload the hidden states;
// per layer RMSNorm (fused with the previous residual add) -> qkv gemm -> bias, rotary,
// KV append (one kernel) -> attention over the paged cache -> o_proj gemm -> TP sum ->
// residual + RMSNorm -> gate|up gemm -> silu * up -> down gemm -> TP sum. The last stage
// norms each request's last token, runs the vocab-parallel LM head (logits all-gathered),
// and samples: greedy requests by an argmax on the GPU; requests that sample, ask for
// logprobs or still mask EOS (min_tokens) by the shared host sampler (sampling.hpp) on
// their logits row, so a seed gives the same tokens as on the CPU runner. TP sums run on
// the stream through NCCL (device_collective) or, with a host collective, through pinned
// memory. The step ends with one wait for the stream, against a deadline.
//
// KV cache: a pool of blocks of 16 positions allocated at load
// (model_config::kv_cache_tokens, default what half the memory left free by the weights
// holds); a request that does not fit fails alone, as on the CPU.
//
// CUDA graphs (vLLM's): a decode step (every request one token) of n <= 128 requests
// replays the graph captured for the smallest bucket >= n (1, 2, 4, 8, 16, 24, ... 128),
// its pad rows aimed at a pad block of the KV pool; the first step of a bucket runs eagerly
// and is captured. Off with model_config::enforce_eager, and with a host TP collective.
// Up to 8 rows the products are a bandwidth-bound gemv kernel, beyond that cuBLAS.
//
// Random weights (model_config::random_weights): config.json alone; every tensor drawn
// on the GPU (uniform, scale 1/sqrt(fan-in); norms 1), no file read.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/models/cuda/cuda_blas.hpp"
#include "runtime/models/cuda/cuda_collective.hpp"
#include "runtime/models/cuda/cuda_llama_kernels.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "runtime/models/hf/hf_config.hpp"
#include "runtime/models/hf/hf_weights.hpp"
#include "runtime/models/hf/step_admission.hpp"
#include "runtime/models/model_runner.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex {

struct cuda_llama_options {
  /// Bound on one step's device work (and its collectives on the host path).
  std::chrono::milliseconds step_timeout{60000};
};

/// The "hf-cuda" model runner. See the top of this file.
class cuda_llama_model final : public model_runner {
public:
  explicit cuda_llama_model(cuda_llama_options opts = {});
  ~cuda_llama_model() override;

  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override;

  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override;

  size_t live_requests() const override { return reqs_.size(); }

  bool drop_requests() override;

  const hf::hf_config& config() const { return hf_; }
  hf::pp_layers layers() const { return layers_; }
  /// Bytes of weights this shard holds on its GPU.
  size_t weight_bytes() const { return weight_bytes_; }
  /// Decode graphs captured so far, and why graphs are off (empty when they are not).
  size_t graphs() const { return graphs_.size(); }
  const std::string& graphs_note() const { return graph_note_; }
  /// Positions the KV pool holds.
  int64_t kv_capacity() const { return static_cast<int64_t>(num_blocks_) * kv_block; }

  static constexpr int kv_block = llama_kernels::kv_block;

private:
  struct layer_weights {
    device_buffer attn_norm, mlp_norm, bqkv, bo; // float32
    device_buffer wqkv, wo, wgu, wdown;          // bfloat16
  };
  struct request {
    int64_t len = 0; ///< committed positions
    int64_t prompt_len = 0;
    sampling_params sampling;
    uint64_t seed = 0;
    std::vector<int32_t> blocks;
  };
  struct step_row {
    request* req = nullptr;
    int64_t pos0 = 0, count = 0;
    const int32_t* tokens = nullptr; ///< its `count` tokens (in the step's scheduler output)
  };

  /// One set of per-step device buffers; the in buffer holds tokens | kv rows | output
  /// rows (the last token of each request) | block tables, at these offsets.
  struct step_buffers {
    device_buffer in, x, xn, qkv, attn, part, gu, act, xlast, logits, gathered, full, sampled;
    size_t off_rows = 0, off_last = 0, off_tables = 0, in_bytes = 0;
  };

  // cuda_llama_weights.cpp: the shard's weights and rotary frequencies on the GPU.
  caf::error load_weights(const model_config& cfg);
  caf::error upload_rope();
  caf::error random_weights(uint64_t seed);
  caf::error make_kv_pool(int64_t tokens);
  caf::error admit(const scheduler_output& step);
  /// Sizes `b` for t token rows, n output rows and that many block-table entries.
  caf::error reserve(step_buffers& b, size_t t, size_t n, size_t table_ints);
  /// Uploads the step's rows (padded to `padded` rows of a decode graph; 0: eager).
  caf::error stage_inputs(const intermediate_tensors* input, size_t padded);
  /// The stage's device work for t token rows and n output rows, on b_.
  caf::error forward(int t, int n);
  caf::error layer(int l, int t);
  caf::error head(int n);
  caf::error fetch_outputs(size_t requests);
  /// The decode graph bucket this step replays, 0 for an eager step.
  int graph_bucket() const;
  caf::error run_graph(int bucket);
  caf::error make_graph_buffers();
  void drop_graphs();
  /// c[m x n] = a[m x k] w^T: the decode gemv for a few rows, cuBLAS otherwise.
  caf::error matmul(int m, int n, int k, const uint16_t* a, const uint16_t* w, float* c);
  caf::error tp_sum(float* data, size_t count, const char* what, int l);
  caf::error finish_step();
  void sample_on_host(model_runner_output& out);
  void rollback();
  caf::error fail(const scheduler_output& step, const caf::error& err);
  std::string who() const;

  cuda_llama_options opts_;
  model_config cfg_;
  hf::hf_config hf_;
  shard_info shard_;
  collective* tp_ = nullptr;
  device_collective* tp_dev_ = nullptr;
  bool loaded_ = false;
  bool broken_ = false;
  int device_ = -1;
  hf::pp_layers layers_;
  hf::tp_slices s_;
  int64_t max_len_ = 0;
  size_t weight_bytes_ = 0;

  cuda_stream stream_;
  std::unique_ptr<gemm_engine> gemm_;
  device_buffer embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<layer_weights> w_;

  device_buffer k_pool_, v_pool_;
  int32_t num_blocks_ = 0;
  std::vector<int32_t> free_blocks_;
  std::unordered_map<std::string, std::unique_ptr<request>> reqs_;

  // Per step.
  hf::step_admission admission_;
  std::vector<step_row> rows_;
  std::vector<std::string> inserted_;
  std::vector<int32_t> taken_; ///< blocks taken this step (given back on rollback)
  int64_t tokens_ = 0;
  std::vector<int32_t> host_rows_; ///< admitted rows sampled on the host
  sampler_scratch sampler_;

  // Device scratch: eager steps' (grows as steps do) and the decode graphs' (sized once:
  // its addresses are baked into the graphs); b_ is this step's. Pinned staging.
  step_buffers eager_, graphed_;
  step_buffers* b_ = &eager_;
  const float* head_logits_ = nullptr; ///< [n x vocab] logits of the last head()
  pinned_buffer pin_in_, pin_hidden_, pin_sampled_, pin_logits_, pin_sum_;
  std::map<int, cudaGraphExec_t> graphs_; ///< decode bucket -> its graph
  bool graphs_ok_ = true;
  std::string graph_note_;
};

} // namespace cafex
