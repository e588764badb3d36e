// C[m x n] = A[m x k] * B^T for a few rows of A (decode batches: m tokens) and a large
// weight matrix B [n x k] (nn.Linear's layout): each row of B is read once and multiplied
// with every row of A while A stays in cache. OpenBLAS's sgemm first packs a copy of B,
// which at m <= 16 costs more than the product (47% of a batch-8 decode step in perf).
// Register tiles of 4 rows of A by 6 rows of B with AVX-512, by 3 with AVX2 + FMA (runtime
// check); without AVX2 + FMA it reports false and the caller uses BLAS. Each output is one
// vector accumulator over k in order, so a row's result has the same bits whatever other
// rows share the call (the batch does not change a request's tokens).
#pragma once

#include <cstdint>

namespace cafex::hf {

/// The most rows of A small_gemm_bt takes.
constexpr int64_t small_gemm_max_rows = 16;

/// Whether this CPU runs small_gemm_bt (AVX2 and FMA; AVX-512 is used where present).
bool small_gemm_available();

/// Which tiles small_gemm_bt uses: the widest the CPU has, or AVX2's (for tests of that
/// path on an AVX-512 CPU).
enum class small_gemm_isa { best, avx2 };

/// C[i * ldc + j] = sum_x A[i * lda + x] * B[j * ldb + x], for i < m <= 16, j < n.
/// Only when small_gemm_available().
void small_gemm_bt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float* c, int64_t ldc,
                   small_gemm_isa isa = small_gemm_isa::best);

} // namespace cafex::hf
