// The one checked-call helper for CUDA, cuBLAS and NCCL (CUDA builds only). A failed
// call becomes a caf::error value naming the library's error name and string, the call
// and file:line; nothing returns early behind the caller's back:
//
//   if (auto err = CAFEX_CHECK(cudaMalloc(&p, n)))
//     return err;
//
// CUDA and cuBLAS failures carry errc::model_failed, NCCL failures
// errc::transport_failed. NCCL's ncclInProgress is not a failure: nonblocking
// communicators return it and the caller polls ncclCommGetAsyncError.
#pragma once

#include <string>

#include <caf/error.hpp>
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "runtime/error.hpp"

namespace cafex {

/// "CUDA error cudaErrorMemoryAllocation (out of memory) in cudaMalloc(&p, n) at
/// runtime/x.cpp:12"; none for cudaSuccess.
caf::error check_call(cudaError_t result, const char* expr, const char* file, int line);

/// cuBLAS status; none for CUBLAS_STATUS_SUCCESS.
caf::error check_call(cublasStatus_t result, const char* expr, const char* file, int line);

/// NCCL result with ncclGetLastError's detail; none for ncclSuccess and ncclInProgress.
caf::error check_call(ncclResult_t result, const char* expr, const char* file, int line);

/// Name of a cuBLAS status (cuBLAS itself is loaded at run time, see cuda_blas.hpp).
const char* cublas_status_name(cublasStatus_t s);

/// Prefixes `err`'s text with `context` ("nccl group 'tp0' rank 1/2: "), keeping its code.
caf::error with_context(const std::string& context, const caf::error& err);

} // namespace cafex

/// Checks one CUDA / cuBLAS / NCCL call; evaluates to a caf::error (none on success).
#define CAFEX_CHECK(expr) ::cafex::check_call((expr), #expr, __FILE__, __LINE__)
