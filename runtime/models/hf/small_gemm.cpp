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

// Up to 8 rows of A against one row of B: 8 accumulators, B's vector loaded once.
template <int M>
__attribute__((target("avx2,fma"))) void
rows_dot(const float* a, int64_t lda, const float* b, int64_t k, float* out) {
  __m256 acc[M];
  for (int i = 0; i < M; ++i)
    acc[i] = _mm256_setzero_ps();
  int64_t x = 0;
  for (; x + 8 <= k; x += 8) {
    const __m256 w = _mm256_loadu_ps(b + x);
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(a + i * lda + x), acc[i]);
  }
  for (int i = 0; i < M; ++i) {
    float s = hsum(acc[i]);
    for (int64_t r = x; r < k; ++r)
      s += a[i * lda + r] * b[r];
    out[i] = s;
  }
}

template <int M>
__attribute__((target("avx2,fma"))) void block(int64_t n, int64_t k, const float* a,
                                               int64_t lda, const float* b, int64_t ldb,
                                               float* c, int64_t ldc) {
  float out[M];
  for (int64_t j = 0; j < n; ++j) {
    rows_dot<M>(a, lda, b + j * ldb, k, out);
    for (int i = 0; i < M; ++i)
      c[i * ldc + j] = out[i];
  }
}

using block_fn = void (*)(int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                          float*, int64_t);
constexpr block_fn blocks[] = {nullptr,  block<1>, block<2>, block<3>, block<4>,
                               block<5>, block<6>, block<7>, block<8>};

} // namespace

bool small_gemm_available() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

void small_gemm_bt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                   const float* b, int64_t ldb, float* c, int64_t ldc) {
  // Rows of A in groups of at most 8 (16 registers: 8 accumulators, B, A's loads).
  for (int64_t i0 = 0; i0 < m; i0 += 8) {
    const auto rows = static_cast<int>(m - i0 < 8 ? m - i0 : 8);
    blocks[rows](n, k, a + i0 * lda, lda, b, ldb, c + i0 * ldc, ldc);
  }
}

} // namespace cafex::hf
