#include "runtime/models/hf/small_gemm.hpp"

#include <immintrin.h>

namespace cafex::hf {

namespace {

__attribute__((target("avx2,fma"))) float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// M rows of A against N rows of B: M * N accumulators, each of B's N vectors loaded once
// per 8 columns and multiplied with each of A's M. At M = 4, N = 3 that is 12 FMAs for 7
// loads in 16 registers (12 accumulators, B's 3, A's 1), where one row of B against 8 of A
// was 8 FMAs for 9 loads and waited on the load ports. Every C[i][j] is the same sum in the
// same order whatever M and N: one 8-lane accumulator over the columns, then its lanes,
// then the tail, so a row's result does not depend on the rows beside it.
template <int M, int N>
__attribute__((target("avx2,fma"))) void tile(int64_t k, const float* a, int64_t lda,
                                              const float* b, int64_t ldb, float* c,
                                              int64_t ldc) {
  __m256 acc[M][N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      acc[i][j] = _mm256_setzero_ps();
  int64_t x = 0;
  for (; x + 8 <= k; x += 8) {
    __m256 w[N];
    for (int j = 0; j < N; ++j)
      w[j] = _mm256_loadu_ps(b + j * ldb + x);
    for (int i = 0; i < M; ++i) {
      const __m256 v = _mm256_loadu_ps(a + i * lda + x);
      for (int j = 0; j < N; ++j)
        acc[i][j] = _mm256_fmadd_ps(w[j], v, acc[i][j]);
    }
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t r = x; r < k; ++r)
        s += a[i * lda + r] * b[j * ldb + r];
      c[i * ldc + j] = s;
    }
}

// The same tile with AVX-512's 16 lanes, where the CPU has it: 4 rows of A by 6 of B are
// 24 accumulators, 6 weights and A's 1 in 31 of the 32 registers, 24 FMAs of 16 lanes for
// 10 loads (1.35x the AVX2 tile's rate at batch 8 on the benchmark VM's Skylake-X).
// The 16 lanes' sum through memory, once per output (GCC 12's reduction and half-extract
// intrinsics warn of an uninitialised value inside their own header).
__attribute__((target("avx512f"))) float hsum512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  for (int i = 0; i < 8; ++i)
    lanes[i] += lanes[i + 8];
  for (int i = 0; i < 4; ++i)
    lanes[i] += lanes[i + 4];
  return (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]);
}

template <int M, int N>
__attribute__((target("avx512f"))) void tile512(int64_t k, const float* a, int64_t lda,
                                                const float* b, int64_t ldb, float* c,
                                                int64_t ldc) {
  __m512 acc[M][N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      acc[i][j] = _mm512_setzero_ps();
  int64_t x = 0;
  for (; x + 16 <= k; x += 16) {
    __m512 w[N];
    for (int j = 0; j < N; ++j)
      w[j] = _mm512_loadu_ps(b + j * ldb + x);
    for (int i = 0; i < M; ++i) {
      const __m512 v = _mm512_loadu_ps(a + i * lda + x);
      for (int j = 0; j < N; ++j)
        acc[i][j] = _mm512_fmadd_ps(w[j], v, acc[i][j]);
    }
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = hsum512(acc[i][j]);
      for (int64_t r = x; r < k; ++r)
        s += a[i * lda + r] * b[j * ldb + r];
      c[i * ldc + j] = s;
    }
}

using tile_fn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*,
                         int64_t);

constexpr int64_t tile_rows = 4;

// [rows of A][rows of B] for the blocks and the edges: up to 4 x 3 with AVX2, 4 x 6 with
// AVX-512.
constexpr tile_fn avx2_tiles[tile_rows + 1][4] = {
  {nullptr},
  {nullptr, tile<1, 1>, tile<1, 2>, tile<1, 3>},
  {nullptr, tile<2, 1>, tile<2, 2>, tile<2, 3>},
  {nullptr, tile<3, 1>, tile<3, 2>, tile<3, 3>},
  {nullptr, tile<4, 1>, tile<4, 2>, tile<4, 3>},
};
constexpr tile_fn avx512_tiles[tile_rows + 1][7] = {
  {nullptr},
  {nullptr, tile512<1, 1>, tile512<1, 2>, tile512<1, 3>, tile512<1, 4>, tile512<1, 5>,
   tile512<1, 6>},
  {nullptr, tile512<2, 1>, tile512<2, 2>, tile512<2, 3>, tile512<2, 4>, tile512<2, 5>,
   tile512<2, 6>},
  {nullptr, tile512<3, 1>, tile512<3, 2>, tile512<3, 3>, tile512<3, 4>, tile512<3, 5>,
   tile512<3, 6>},
  {nullptr, tile512<4, 1>, tile512<4, 2>, tile512<4, 3>, tile512<4, 4>, tile512<4, 5>,
   tile512<4, 6>},
};

template <int64_t Cols, size_t W>
void run_tiles(const tile_fn (&tiles)[tile_rows + 1][W], int64_t m, int64_t n, int64_t k,
               const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
               int64_t ldc) {
  // B (the weights, many MB) is streamed from memory once: each block of its rows is
  // multiplied with every group of 4 rows of A while it is in L1/L2 (6 rows of 5120 floats
  // are 120 KB); A (at most 16 rows) stays in L2 throughout.
  for (int64_t j0 = 0; j0 < n; j0 += Cols) {
    const int64_t cols = n - j0 < Cols ? n - j0 : Cols;
    for (int64_t i0 = 0; i0 < m; i0 += tile_rows) {
      const int64_t rows = m - i0 < tile_rows ? m - i0 : tile_rows;
      tiles[rows][cols](k, a + i0 * lda, lda, b + j0 * ldb, ldb, c + i0 * ldc + j0, ldc);
    }
  }
}

bool has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}

} // namespace

bool small_gemm_available() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void small_gemm_bt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float* c, int64_t ldc, small_gemm_isa isa) {
  if (isa == small_gemm_isa::best && has_avx512())
    run_tiles<6>(avx512_tiles, m, n, k, a, lda, b, ldb, c, ldc);
  else
    run_tiles<3>(avx2_tiles, m, n, k, a, lda, b, ldb, c, ldc);
}

} // namespace cafex::hf
