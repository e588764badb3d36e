#include "runtime/models/cuda/cuda_check.hpp"

#include <string_view>

#include <caf/message.hpp>
#include <fmt/format.h>

namespace cafex {

namespace {

// Paths relative to the source root read better in logs than absolute build paths.
const char* short_file(const char* file) {
  std::string_view f{file};
  for (const char* layer : {"/runtime/", "/transport/", "/actors/", "/tests/", "/bench/"}) {
    auto pos = f.rfind(layer);
    if (pos != std::string_view::npos)
      return file + pos + 1;
  }
  return file;
}

} // namespace

caf::error check_call(cudaError_t result, const char* expr, const char* file, int line) {
  if (result == cudaSuccess)
    return caf::none;
  return make_error(errc::model_failed,
                    fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(result),
                                cudaGetErrorString(result), expr, short_file(file), line));
}

caf::error check_call(cublasStatus_t result, const char* expr, const char* file, int line) {
  if (result == CUBLAS_STATUS_SUCCESS)
    return caf::none;
  return make_error(errc::model_failed,
                    fmt::format("cuBLAS error {} ({}) in {} at {}:{}",
                                cublas_status_name(result), static_cast<int>(result), expr,
                                short_file(file), line));
}

caf::error check_call(ncclResult_t result, const char* expr, const char* file, int line) {
  if (result == ncclSuccess || result == ncclInProgress)
    return caf::none;
  const char* last = ncclGetLastError(nullptr);
  return make_error(errc::transport_failed,
                    fmt::format("NCCL error {} ({}){}{} in {} at {}:{}",
                                static_cast<int>(result), ncclGetErrorString(result),
                                last && *last ? ": " : "", last ? last : "", expr,
                                short_file(file), line));
}

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

caf::error with_context(const std::string& context, const caf::error& err) {
  if (!err)
    return err;
  auto code = code_of(err);
  // Keep only the text of a cafex error: its code travels as the code, not twice.
  std::string text = describe(err);
  const auto& ctx = err.context();
  if (code != errc::none && ctx.match_elements<std::string>())
    text = ctx.get_as<std::string>(0);
  return make_error(code == errc::none ? errc::model_failed : code, context + ": " + text);
}

} // namespace cafex
