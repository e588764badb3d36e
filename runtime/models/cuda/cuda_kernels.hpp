// The small CUDA kernels of the CUDA reference model (CUDA builds only), as host launch
// functions on plain pointers and a stream. Each mirrors one CPU function of
// tensor_math.hpp / reference_model.cpp and follows its rounding where it matters
// (fixed-point sums round to nearest-even exactly like accumulate_fixed; argmax keeps the
// lowest index on ties). Launches are asynchronous; errors come from cudaGetLastError.
#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/error.hpp>
#include <cuda_runtime_api.h>

namespace cafex::cuda_kernels {

/// One token row of a step, as the attention kernels see it.
struct attn_row {
  float* k = nullptr; ///< its request's K slab: [local layers][local heads][cap][head_dim]
  float* v = nullptr; ///< its request's V slab, same layout
  int cap = 0;        ///< positions the slabs hold per (layer, head)
  int pos = 0;        ///< this token's position (it sees positions 0..pos)
};

/// y[r] = rmsnorm(x[src(r)]) * gain for `rows` rows of `cols`; src(r) = rows_index[r]
/// when given (gathers the last token of each request), else r. eps 1e-6.
caf::error rmsnorm(const float* x, const float* gain, float* y, int rows, int cols,
                   const int* rows_index, cudaStream_t s);

/// In place x = x * sigmoid(x) for n values.
caf::error silu(float* x, size_t n, cudaStream_t s);

/// Copies each row's K and V (columns [d, 3d) of qkv[head][row]) into its request's
/// slabs at its position, for the `heads` local heads of local layer `layer`. qkv is
/// [heads][tokens][3*d].
caf::error append_kv(const float* qkv, const attn_row* rows, int tokens, int heads, int layer,
                     int d, cudaStream_t s);

/// Causal attention of each row and head over its request's cached positions 0..pos:
/// out[head][row] (out is [heads][tokens][d]) = softmax(scale * q.K^T) V, q from qkv. `max_keys` bounds pos + 1 over
/// the rows (sizes shared memory).
caf::error attention(const float* qkv, const attn_row* rows, int tokens, int heads, int layer,
                     int d, float scale, int max_keys, float* out, cudaStream_t s);

/// Largest max_keys attention() accepts on the current device for head size `d`
/// (its scores live in shared memory); 0 when the device cannot be queried.
int attention_max_keys(int d);

/// acc[i] = sum over p < parts of round(c[p * stride + i] * 2^24) (nearest-even, NaN as 0,
/// clamped to +-2^50), exactly as tensor_math's accumulate_fixed.
caf::error fixed_sum(const float* c, int parts, size_t stride, size_t n, int64_t* acc,
                     cudaStream_t s);

/// x[i] += float(acc[i] * 2^-24), as tensor_math's add_from_fixed.
caf::error add_from_fixed(const int64_t* acc, float* x, size_t n, cudaStream_t s);

/// out[r] = argmax of logits[r][0..vocab), ties to the lowest index.
caf::error argmax(const float* logits, int rows, int vocab, int32_t* out, cudaStream_t s);

/// Row-major strided-batched SGEMM without cuBLAS (the fallback gemm): for each b,
/// C_b[m x n] = alpha * A_b[m x k] * op(B_b), op(B) = B [k x n] or, trans_b, B^T with B
/// [n x k]. Plain tiled kernel, fp32 accumulation in k order.
caf::error sgemm(int m, int n, int k, float alpha, const float* a, int lda, long long sa,
                 const float* b, int ldb, long long sb, bool trans_b, float* c, int ldc,
                 long long sc, int batch, cudaStream_t s);

} // namespace cafex::cuda_kernels
