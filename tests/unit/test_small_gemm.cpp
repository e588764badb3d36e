// small_gemm_bt against a plain triple loop, for every row count it takes and sizes with
// and without a tail of fewer than 8 (16) columns, with leading dimensions wider than k,
// through the best tiles of this CPU and through AVX2's.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/models/hf/small_gemm.hpp"

using namespace cafex::hf;

TEST_CASE("small_gemm_bt computes A * B^T for 1..16 rows") {
  if (!small_gemm_available()) {
    MESSAGE("this CPU has no AVX2+FMA: small_gemm_bt is not used here");
    return;
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto isa : {small_gemm_isa::best, small_gemm_isa::avx2})
    for (int64_t k : {8, 13, 64, 1283}) {
      for (int64_t m = 1; m <= small_gemm_max_rows; ++m)
        for (int64_t n : {5, 37, 40}) { // edge blocks of 1..5 rows of B
          const int64_t lda = k + 3, ldb = k + 5, ldc = n + 2;
          std::vector<float> a(static_cast<size_t>(m * lda)), b(static_cast<size_t>(n * ldb));
          for (auto& x : a)
            x = u(rng);
          for (auto& x : b)
            x = u(rng);
          std::vector<float> c(static_cast<size_t>(m * ldc), -7.0f);
          small_gemm_bt(m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, isa);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double want = 0;
              for (int64_t x = 0; x < k; ++x)
                want += static_cast<double>(a[static_cast<size_t>(i * lda + x)])
                        * b[static_cast<size_t>(j * ldb + x)];
              INFO("isa " << static_cast<int>(isa) << " k " << k << " m " << m << " n " << n
                          << " i " << i << " j " << j);
              CHECK(c[static_cast<size_t>(i * ldc + j)]
                    == doctest::Approx(want).epsilon(1e-4).scale(std::sqrt(double(k))));
            }
          // Columns past n of each row of C are untouched.
          for (int64_t i = 0; i < m; ++i)
            CHECK(c[static_cast<size_t>(i * ldc + n)] == -7.0f);
        }
    }
}

TEST_CASE("small_gemm_bt gives a row the same bits whatever rows are beside it") {
  if (!small_gemm_available())
    return;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1, 1);
  const int64_t k = 1029, n = 11, m = small_gemm_max_rows;
  std::vector<float> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(n * k));
  for (auto& x : a)
    x = u(rng);
  for (auto& x : b)
    x = u(rng);
  for (auto isa : {small_gemm_isa::best, small_gemm_isa::avx2}) {
    std::vector<float> all(static_cast<size_t>(m * n));
    small_gemm_bt(m, n, k, a.data(), k, b.data(), k, all.data(), n, isa);
    for (int64_t i = 0; i < m; ++i) {
      std::vector<float> one(static_cast<size_t>(n));
      small_gemm_bt(1, n, k, a.data() + i * k, k, b.data(), k, one.data(), n, isa);
      for (int64_t j = 0; j < n; ++j) {
        INFO("isa " << static_cast<int>(isa) << " row " << i << " column " << j);
        CHECK(one[static_cast<size_t>(j)] == all[static_cast<size_t>(i * n + j)]);
      }
    }
  }
}
