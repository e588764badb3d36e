#include "runtime/models/cuda/cuda_blas.hpp"

#include <dlfcn.h>

#include <mutex>

#include <cublas_api.h>
#include <fmt/format.h>

#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_kernels.hpp"

namespace cafex {

namespace {

// The few cuBLAS entry points the model uses, resolved once per process.
struct cublas_library {
  using create_fn = cublasStatus_t (*)(cublasHandle_t*);
  using destroy_fn = cublasStatus_t (*)(cublasHandle_t);
  using set_stream_fn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
  using set_math_fn = cublasStatus_t (*)(cublasHandle_t, cublasMath_t);
  using sgemm_batched_fn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t,
                                              cublasOperation_t, int, int, int, const float*,
                                              const float*, int, long long, const float*, int,
                                              long long, const float*, float*, int, long long,
                                              int);
  using gemm_ex_fn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                                        int, int, int, const void*, const void*, cudaDataType,
                                        int, const void*, cudaDataType, int, const void*,
                                        void*, cudaDataType, int, cublasComputeType_t,
                                        cublasGemmAlgo_t);
  void* dl = nullptr;
  std::string error; ///< why loading failed
  create_fn create = nullptr;
  destroy_fn destroy = nullptr;
  set_stream_fn set_stream = nullptr;
  set_math_fn set_math = nullptr;
  sgemm_batched_fn sgemm_batched = nullptr;
  gemm_ex_fn gemm_ex = nullptr; ///< bfloat16 products (may be missing in an old cuBLAS)
};

const cublas_library& cublas() {
  static cublas_library lib;
  static std::once_flag once;
  std::call_once(once, [] {
    for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      lib.dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib.dl != nullptr)
        break;
      const char* why = dlerror();
      lib.error += fmt::format("{}{}", lib.error.empty() ? "" : "; ", why ? why : name);
    }
    if (lib.dl == nullptr) {
      lib.error = "cuBLAS not found (" + lib.error
                  + "): put its directory on "
                    "LD_LIBRARY_PATH, or use the builtin gemm";
      return;
    }
    auto sym = [](const char* name) { return dlsym(lib.dl, name); };
    lib.create = reinterpret_cast<cublas_library::create_fn>(sym("cublasCreate_v2"));
    lib.destroy = reinterpret_cast<cublas_library::destroy_fn>(sym("cublasDestroy_v2"));
    lib.set_stream = reinterpret_cast<cublas_library::set_stream_fn>(
      sym("cublasSetStream_v2"));
    lib.set_math = reinterpret_cast<cublas_library::set_math_fn>(sym("cublasSetMathMode"));
    lib.sgemm_batched = reinterpret_cast<cublas_library::sgemm_batched_fn>(
      sym("cublasSgemmStridedBatched"));
    lib.gemm_ex = reinterpret_cast<cublas_library::gemm_ex_fn>(sym("cublasGemmEx"));
    if (!lib.create || !lib.destroy || !lib.set_stream || !lib.set_math
        || !lib.sgemm_batched) {
      lib.error = "the loaded cuBLAS lacks cublasCreate_v2 / cublasSgemmStridedBatched";
      lib.dl = nullptr; // keep the library mapped; just do not use it
    }
  });
  return lib;
}

} // namespace

const char* to_string(gemm_backend b) {
  switch (b) {
    case gemm_backend::automatic: return "automatic";
    case gemm_backend::cublas: return "cublas";
    case gemm_backend::builtin: return "builtin";
  }
  return "unknown";
}

caf::expected<std::unique_ptr<gemm_engine>> gemm_engine::create(gemm_backend want,
                                                                cudaStream_t stream) {
  std::unique_ptr<gemm_engine> self{new gemm_engine(stream)};
  if (want == gemm_backend::builtin) {
    self->why_builtin_ = "builtin gemm requested";
    return self;
  }
  const auto& lib = cublas();
  caf::error err;
  if (lib.dl == nullptr) {
    err = make_error(errc::model_failed, lib.error);
  } else {
    cublasHandle_t h = nullptr;
    err = CAFEX_CHECK(lib.create(&h));
    if (!err) {
      self->handle_ = h;
      err = CAFEX_CHECK(lib.set_stream(h, stream));
      if (!err) // FP32 products, never TF32: stay close to the CPU reference
        err = CAFEX_CHECK(lib.set_math(h, CUBLAS_DEFAULT_MATH));
    }
  }
  if (!err)
    return self;
  if (want == gemm_backend::cublas)
    return err;
  self->why_builtin_ = describe(err);
  if (self->handle_ != nullptr) {
    lib.destroy(static_cast<cublasHandle_t>(self->handle_));
    self->handle_ = nullptr;
  }
  return self;
}

gemm_engine::~gemm_engine() {
  if (handle_ != nullptr)
    cublas().destroy(static_cast<cublasHandle_t>(handle_));
}

caf::error gemm_engine::run(const gemm_args& g) {
  if (handle_ == nullptr)
    return cuda_kernels::sgemm(g.m, g.n, g.k, g.alpha, g.a, g.lda, g.stride_a, g.b, g.ldb,
                               g.stride_b, g.trans_b, g.c, g.ldc, g.stride_c, g.batch,
                               stream_);
  // Row-major C = A op(B) is column-major C^T = op(B)^T A^T: swap the operands. The
  // row-major B read column-major is B^T, so op stays N for B and becomes T for B^T.
  const float beta = 0.0f;
  return CAFEX_CHECK(cublas().sgemm_batched(static_cast<cublasHandle_t>(handle_),
                                            g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                                            g.n, g.m, g.k, &g.alpha, g.b, g.ldb, g.stride_b,
                                            g.a, g.lda, g.stride_a, &beta, g.c, g.ldc,
                                            g.stride_c, g.batch));
}

caf::error gemm_engine::run_bf16(int m, int n, int k, const uint16_t* a, const uint16_t* w,
                                 float* c, float beta) {
  if (m <= 0 || n <= 0)
    return caf::none;
  if (handle_ == nullptr || cublas().gemm_ex == nullptr)
    return make_error(errc::model_failed,
                      "bfloat16 products need cuBLAS (cublasGemmEx), which is not in use: "
                        + (why_builtin_.empty() ? std::string{"this cuBLAS lacks it"}
                                                : why_builtin_));
  // Row-major C = A W^T is column-major C^T = W A^T; W read column-major is W^T, hence
  // op T on it, and A read column-major is already A^T.
  const float alpha = 1.0f;
  return CAFEX_CHECK(cublas().gemm_ex(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_T,
                                      CUBLAS_OP_N, n, m, k, &alpha, w, CUDA_R_16BF, k, a,
                                      CUDA_R_16BF, k, &beta, c, CUDA_R_32F, n,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

} // namespace cafex
