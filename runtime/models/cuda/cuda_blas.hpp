// Matrix products of the CUDA reference model (CUDA builds only): row-major
// strided-batched SGEMM through cuBLAS, or through a plain tiled kernel when cuBLAS is
// not wanted or not installed. cuBLAS is opened at run time (dlopen of libcublas.so.13,
// then .12) instead of being linked: its libraries (600 MB with cublasLt) cannot travel
// with the binaries, and a machine without them then gets an error value or the builtin
// kernel instead of a dynamic-loader abort of every cafex binary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <cuda_runtime_api.h>

namespace cafex {

/// Which SGEMM implementation a gemm_engine uses.
enum class gemm_backend {
  automatic, ///< cuBLAS when it loads, else builtin
  cublas,    ///< cuBLAS or an error
  builtin,   ///< cuda_kernels::sgemm
};

/// "automatic", "cublas" or "builtin".
const char* to_string(gemm_backend b);

/// One row-major strided-batched product: for b < batch,
/// C_b[m x n] = alpha * A_b[m x k] * op(B_b), with op(B) = B ([k x n], ldb >= n) or,
/// when trans_b, B^T (B is [n x k], ldb >= k). X_b = X + b * stride_x; a stride may be 0.
struct gemm_args {
  int m = 0;
  int n = 0;
  int k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  int lda = 0;
  long long stride_a = 0;
  const float* b = nullptr;
  int ldb = 0;
  long long stride_b = 0;
  bool trans_b = false;
  float* c = nullptr;
  int ldc = 0;
  long long stride_c = 0;
  int batch = 1;
};

/// SGEMM on one stream of the current device. FP32 throughout (cuBLAS in its default
/// math mode, no TF32), so results stay close to the CPU model's OpenBLAS products.
class gemm_engine {
public:
  /// Opens cuBLAS when `want` allows it. errc::model_failed when `want` is cublas and
  /// cuBLAS cannot be loaded or initialised (the message names what dlopen said).
  static caf::expected<std::unique_ptr<gemm_engine>> create(gemm_backend want,
                                                            cudaStream_t stream);
  ~gemm_engine();

  gemm_engine(const gemm_engine&) = delete;
  gemm_engine& operator=(const gemm_engine&) = delete;

  /// Enqueues one product on the engine's stream.
  caf::error run(const gemm_args& g);

  /// Row-major C[m x n] = A[m x k] * W^T + beta * C with A and W ([n x k], nn.Linear's
  /// layout) in bfloat16 (uint16_t bits), C in float32, float32 accumulation (cublasGemmEx).
  /// errc::model_failed when cuBLAS is not in use: there is no builtin bfloat16 product.
  caf::error run_bf16(int m, int n, int k, const uint16_t* a, const uint16_t* w, float* c,
                      float beta = 0.0f);

  /// The backend actually in use: cublas or builtin.
  gemm_backend backend() const {
    return handle_ != nullptr ? gemm_backend::cublas : gemm_backend::builtin;
  }

  /// Why cuBLAS is not in use (empty when it is).
  const std::string& why_builtin() const { return why_builtin_; }

private:
  explicit gemm_engine(cudaStream_t stream) : stream_(stream) {}

  cudaStream_t stream_;
  void* handle_ = nullptr; ///< cublasHandle_t
  std::string why_builtin_;
};

} // namespace cafex
