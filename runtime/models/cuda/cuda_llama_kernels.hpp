// The kernels of the hf runner on CUDA (CUDA builds only): bfloat16 weights and matrix
// inputs, float32 residual stream, float32 accumulation everywhere, as host launch
// functions on plain pointers and a stream. bfloat16 values cross this header as
// uint16_t (the bits of __nv_bfloat16), so host code needs no CUDA headers for them.
// Launches are asynchronous; errors come from cudaGetLastError.
//
// The KV cache is paged (vLLM's layout idea): one pool of blocks of `kv_block` positions;
// block b holds, for every local layer and KV head, kv_block rows of head_dim values:
// pool[((b * layers + layer) * kv_heads + head) * kv_block + slot][head_dim]. A request's
// block table lists its blocks in position order.
#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/error.hpp>
#include <cuda_runtime_api.h>

namespace cafex::llama_kernels {

/// Positions per KV cache block.
constexpr int kv_block = 16;

/// Where one token row of a step reads and writes its request's KV cache.
struct kv_row {
  const int32_t* blocks = nullptr; ///< its request's block table (device memory)
  int pos = 0;                     ///< this token's position (it sees 0..pos)
};

/// The KV cache's shape on this shard.
struct kv_shape {
  uint16_t* k = nullptr; ///< K pool (bfloat16)
  uint16_t* v = nullptr; ///< V pool (bfloat16)
  int layers = 0;        ///< local layers
  int kv_heads = 0;      ///< local KV heads
  int head_dim = 0;
};

/// x[r] = embedding row tokens[r] - vocab0 when it falls in this rank's [0, rows) slice of
/// the table ([rows x hidden] bfloat16), else zeros (vocab-parallel: the TP sum fills in).
caf::error embed(const int32_t* tokens, const uint16_t* table, int64_t vocab0,
                 int64_t table_rows, int rows, int hidden, float* x, cudaStream_t s);

/// For each row r: when `add` is given, x[r] += add[r] (the residual); then, when `gain` is
/// given, y[r] = bfloat16(gain * x[r] / sqrt(mean(x[r]^2) + eps)) (LlamaRMSNorm). With
/// `rows_index`, y's row r normalises x's row rows_index[r] (the last token of each
/// request) and `add` must be null.
caf::error add_rmsnorm(float* x, const float* add, const float* gain, uint16_t* y, int rows,
                       int hidden, float eps, const int* rows_index, cudaStream_t s);

/// c[r][j] += bias[j] for `rows` rows of `cols`.
caf::error add_bias(float* c, const float* bias, int rows, int cols, cudaStream_t s);

/// Per token row of qkv ([tokens x (q_heads + 2 kv_heads) * head_dim], float32): adds
/// `bias` (when given), rotates the q and k heads in place (rotate_half layout, angle
/// pos * inv_freq[i]) and writes k and v into the cache of `layer` at the row's position.
caf::error qkv_rope_append(float* qkv, const float* bias, const float* inv_freq,
                           const kv_row* rows, int tokens, int q_heads, const kv_shape& kv,
                           int layer, cudaStream_t s);

/// Causal attention of every row and query head over its request's positions
/// [max(0, pos - window + 1), pos] (window 0: all), GQA (query head h reads KV head
/// h / (q_heads / kv_heads)); out[row][h * head_dim + i] in bfloat16. Online softmax in
/// float32: no bound on the context.
caf::error attention(const float* qkv, const kv_row* rows, int tokens, int q_heads,
                     const kv_shape& kv, int layer, float scale, int window, uint16_t* out,
                     cudaStream_t s);

/// out[r][j] = bfloat16(silu(gu[r][j]) * gu[r][n + j]) for j < n (gate | up halves).
caf::error silu_mul(const float* gu, int rows, int64_t n, uint16_t* out, cudaStream_t s);

/// gathered is [tp][rows][slice] (each rank's logits); out[r][t] for t < vocab is
/// gathered[t / slice][r][t % slice].
caf::error unshard_logits(const float* gathered, int tp, int rows, int64_t slice,
                          int64_t vocab, float* out, cudaStream_t s);

/// Rows up to which gemv() serves a product; cuBLAS beyond (measured on an H200: gemv
/// 81-102% of a device copy at 1 row, cuBLAS ahead from 4 rows).
constexpr int gemv_max_rows = 2;

/// Whether gemv() takes these operands: 1..gemv_max_rows rows, k % 8 == 0, 16-byte
/// aligned x and w.
bool gemv_fits(int m, int k, const void* x, const void* w);

/// y[m x n] = x[m x k] * w^T (w [n x k], nn.Linear's layout), bfloat16 inputs, float32
/// out and accumulation, for the few rows of a decode step: weight-bandwidth bound, one
/// warp per output column. errc::invalid_argument when !gemv_fits.
caf::error gemv(int m, int n, int k, const uint16_t* x, const uint16_t* w, float* y,
                cudaStream_t s);

/// out[m x n] = bfloat16(silu(x w_gate^T) * (x w_up^T)), w = [gate rows | up rows] ([2n x
/// k]): the MLP's gate|up product with SiLU-and-mul fused (gemv's operand rules).
caf::error gemv_gate_up(int m, int n, int k, const uint16_t* x, const uint16_t* w,
                        uint16_t* out, cudaStream_t s);

/// n bfloat16 values uniform in [-scale, scale), a counter-based hash of (seed, i): the
/// same on every device and run.
caf::error fill_random(uint16_t* w, size_t n, uint64_t seed, float scale, cudaStream_t s);

/// n float32 values, all `value`.
caf::error fill(float* w, size_t n, float value, cudaStream_t s);

/// n bfloat16 values converted from float32 (round to nearest even).
caf::error to_bf16(const float* src, uint16_t* dst, size_t n, cudaStream_t s);

} // namespace cafex::llama_kernels
