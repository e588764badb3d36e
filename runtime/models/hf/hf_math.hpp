// The float32 kernels of the hf runner, as transformers' modeling_llama computes them:
// the linear layers' product (nn.Linear's [out x in] weights), RMSNorm and the rotary
// embedding in the rotate_half layout. Pure functions, no state.
#pragma once

#include <cstdint>
#include <vector>

namespace cafex::hf {

/// Row-major C[m x n] = alpha * A[m x k] * B^T, B stored [n x k]: small_gemm_bt for up to
/// 16 rows (where the CPU has AVX2+FMA; decode steps), else OpenBLAS (sgemv for one row,
/// sgemm beyond 16: prefill).
void gemm_bt(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, float* c, int64_t ldc);

/// LlamaRMSNorm in float32: y = weight * (x * rsqrt(mean(x^2) + eps)), row by row.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, float eps);

/// cos and sin of `pos` times each inverse frequency (one entry per pair of dimensions):
/// computed once per position, applied to every head by rope().
void rope_angles(int64_t pos, const std::vector<float>& inv_freq, std::vector<float>& cos,
                 std::vector<float>& sin);

/// Rotates one head vector of `d` dimensions in transformers' rotate_half layout: the
/// pairs are (i, i + d/2).
void rope(float* v, int64_t d, const std::vector<float>& cos, const std::vector<float>& sin);

} // namespace cafex::hf
