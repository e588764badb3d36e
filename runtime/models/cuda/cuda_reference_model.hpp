// The reference model on one GPU (CUDA builds only): the same function as
// reference_model.hpp, from the same weights (generated on the host by
// make_shard_weights and uploaded), the same layer split and the same fixed-point
// per-head / per-block TP sums, so its tokens equal the CPU model's for the same seed and
// its hidden states agree to float rounding (cuBLAS and OpenBLAS sum in different orders).
//
// Registered as "reference-cuda"; a worker whose device is cuda resolves the model name
// "reference" to it (model_registry::resolve), so one model name serves both devices.
//
// Per step, on one stream: the host embeds the tokens (exactly as the CPU model: cheap,
// and keeps sin/cos bit-identical) and uploads them; every layer runs RMSNorm, all local
// heads' QKV as one batched gemm, K/V appended to a per-request device KV cache, causal
// attention, all heads' output projections as one batched gemm, a kernel summing the
// per-head contributions in int64 fixed point, the TP all-reduce, and the same for the
// MLP blocks; the last stage norms each request's last token, runs the LM head and a
// lowest-index argmax. The TP sum runs on the device when the collective implements
// device_collective (NCCL), else through pinned host memory (solo, Gloo, the fake).
// The step ends with one wait for the stream, polled against a deadline.
//
// Device: the calling thread's current CUDA device at load(); execute() rebinds its own
// thread to it, so a worker may call from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/models/cuda/cuda_blas.hpp"
#include "runtime/models/cuda/cuda_collective.hpp"
#include "runtime/models/cuda/cuda_kernels.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "runtime/models/model_runner.hpp"
#include "runtime/models/reference_weights.hpp"

namespace cafex {

struct cuda_model_options {
  /// SGEMM implementation; automatic uses cuBLAS when it loads.
  gemm_backend gemm = gemm_backend::automatic;
  /// Bound on one step's device work (and its collectives on the host path).
  std::chrono::milliseconds step_timeout{60000};
};

/// The "reference-cuda" model runner. See the top of this file.
class cuda_reference_model final : public model_runner {
public:
  explicit cuda_reference_model(cuda_model_options opts = {});
  ~cuda_reference_model() override;

  /// As reference_model::load, on the current CUDA device; errc::model_failed naming the
  /// CUDA call when allocation or upload fails, or when max_seq_len does not fit the
  /// attention kernel's shared memory.
  caf::error load(const model_config& cfg, const shard_info& shard, collective& tp) override;

  caf::expected<stage_result> execute(const scheduler_output& step,
                                      const intermediate_tensors* input) override;

  size_t live_requests() const override { return cache_.size(); }

  /// The CUDA device the shard lives on (valid after load()).
  int device() const { return device_; }

  /// The SGEMM backend in use (valid after load()).
  gemm_backend gemm() const { return gemm_ ? gemm_->backend() : opts_.gemm; }

private:
  struct layer_buffers {
    device_buffer attn_norm, mlp_norm, wqkv, wo, wup, wdown;
  };

  /// One request's KV cache: [local layers][local heads][cap][head_dim] for K and V.
  struct kv_entry {
    int64_t len = 0; ///< committed positions
    int64_t cap = 0;
    device_buffer k, v;
  };

  caf::error upload(device_buffer& dst, const std::vector<float>& src);
  caf::error plan(const scheduler_output& step, const intermediate_tensors* input);
  caf::error grow(kv_entry& kv, int64_t need);
  caf::error layer(int l);
  caf::error gemm(int m, int n, int k, const float* a, int lda, long long sa, const float* b,
                  int ldb, long long sb, float* c, int ldc, long long sc, int batch);
  caf::error reduce_into_x(const char* what, int l);
  caf::error sample(size_t requests);
  caf::error finish_step();
  void rollback();
  caf::error fail(const scheduler_output& step, const caf::error& err);

  cuda_model_options opts_;
  model_config cfg_;
  shard_info shard_;
  collective* tp_ = nullptr;
  device_collective* tp_dev_ = nullptr; ///< tp_ as a device collective, if it is one
  bool loaded_ = false;
  bool broken_ = false; ///< the stream could not be drained after a failure
  int device_ = -1;
  layer_range layers_;
  int head_dim_ = 0;
  int local_heads_ = 0;
  int block_ = 0;
  int local_blocks_ = 0;
  bool first_stage_ = true;
  bool last_stage_ = true;

  cuda_stream stream_;
  std::unique_ptr<gemm_engine> gemm_;

  // Weights: embeddings stay on the host (stage 0 embeds there), the rest on the device.
  std::vector<float> embed_;
  std::vector<double> pos_freqs_;
  device_buffer final_norm_, lm_head_;
  std::vector<layer_buffers> w_;

  std::unordered_map<std::string, std::unique_ptr<kv_entry>> cache_;
  std::vector<device_buffer> retired_; ///< freed once the stream has drained

  // Per-step state.
  std::vector<std::string> inserted_;
  std::vector<kv_entry*> step_kv_; ///< per request
  std::vector<int64_t> step_end_;  ///< per request: committed length after the step
  int64_t tokens_ = 0;
  int max_keys_ = 0;

  // Device scratch.
  device_buffer x_, xn_, qkv_, attn_, parts_, up_, acc_, logits_, rows_, last_, sampled_;
  // Pinned host staging (copies to and from pageable memory could block unboundedly).
  pinned_buffer pin_x_, pin_rows_, pin_last_, pin_acc_, pin_sampled_, pin_hidden_;
};

} // namespace cafex
