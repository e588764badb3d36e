// C[m x n] = A[m x k] * B^T for a few rows of A (decode batches: m tokens) and a large
// weight matrix B [n x k] (nn.Linear's layout): each row of B is read once and multiplied
// with every row of A while A stays in cache. OpenBLAS's sgemm first packs a copy of B,
// which at m <= 16 costs more than the product (47% of a batch-8 decode step in perf).
// AVX2 + FMA when the CPU has them (runtime check), else it reports false and the caller
// uses BLAS.
#pragma once

#include <cstdint>

namespace cafex::hf {

/// The most rows of A small_gemm_bt takes.
constexpr int64_t small_gemm_max_rows = 16;

/// Whether this CPU runs small_gemm_bt (AVX2 and FMA).
bool small_gemm_available();

/// C[i * ldc + j] = sum_x A[i * lda + x] * B[j * ldb + x], for i < m <= 16, j < n.
/// Only when small_gemm_available().
void small_gemm_bt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float* c, int64_t ldc);

} // namespace cafex::hf
