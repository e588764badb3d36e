#include "runtime/models/hf/hf_math.hpp"

#include <cmath>

#include <cblas.h>

#include "runtime/models/hf/small_gemm.hpp"

namespace cafex::hf {

void gemm_bt(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
             const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (m <= small_gemm_max_rows && alpha == 1.0f && small_gemm_available()) {
    small_gemm_bt(m, n, k, a, lda, b, ldb, c, ldc);
    return;
  }
  if (m == 1) { // one token (decode at batch 1): a matrix-vector product
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), alpha,
                b, static_cast<int>(ldb), a, 1, 0.0f, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), 0.0f, c, static_cast<int>(ldc));
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols,
              float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float ss = 0;
    for (int64_t i = 0; i < cols; ++i)
      ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(cols) + eps);
    for (int64_t i = 0; i < cols; ++i)
      yr[i] = w[i] * (xr[i] * inv);
  }
}

void rope_angles(int64_t pos, const std::vector<float>& inv_freq, std::vector<float>& cos,
                 std::vector<float>& sin) {
  cos.resize(inv_freq.size());
  sin.resize(inv_freq.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const float f = static_cast<float>(pos) * inv_freq[i];
    cos[i] = std::cos(f);
    sin[i] = std::sin(f);
  }
}

void rope(float* v, int64_t d, const std::vector<float>& cos, const std::vector<float>& sin) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const auto k = static_cast<size_t>(i);
    const float a = v[i], b = v[i + half];
    v[i] = a * cos[k] - b * sin[k];
    v[i + half] = b * cos[k] + a * sin[k];
  }
}

} // namespace cafex::hf
