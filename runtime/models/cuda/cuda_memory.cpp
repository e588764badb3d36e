#include "runtime/models/cuda/cuda_memory.hpp"

#include <thread>

#include <fmt/format.h>

#include "runtime/models/cuda/cuda_check.hpp"

namespace cafex {

// Destructors and reset() ignore errors on purpose: they run on error paths too, and a
// failed free leaves nothing the caller could do.

device_buffer& device_buffer::operator=(device_buffer&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

caf::error device_buffer::reserve(size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr)
    return caf::none;
  reset();
  void* p = nullptr;
  if (auto err = CAFEX_CHECK(cudaMalloc(&p, bytes == 0 ? 1 : bytes)))
    return err;
  ptr_ = p;
  bytes_ = bytes;
  return caf::none;
}

void device_buffer::reset() {
  if (ptr_ != nullptr)
    cudaFree(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

pinned_buffer& pinned_buffer::operator=(pinned_buffer&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

caf::error pinned_buffer::reserve(size_t bytes) {
  if (bytes <= bytes_ && ptr_ != nullptr)
    return caf::none;
  reset();
  void* p = nullptr;
  if (auto err = CAFEX_CHECK(cudaMallocHost(&p, bytes == 0 ? 1 : bytes)))
    return err;
  ptr_ = p;
  bytes_ = bytes;
  return caf::none;
}

void pinned_buffer::reset() {
  if (ptr_ != nullptr)
    cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
}

cuda_stream& cuda_stream::operator=(cuda_stream&& other) noexcept {
  if (this != &other) {
    reset();
    s_ = std::exchange(other.s_, nullptr);
  }
  return *this;
}

caf::error cuda_stream::create() {
  reset();
  return CAFEX_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
}

void cuda_stream::reset() {
  if (s_ != nullptr)
    cudaStreamDestroy(s_);
  s_ = nullptr;
}

cuda_event& cuda_event::operator=(cuda_event&& other) noexcept {
  if (this != &other) {
    reset();
    e_ = std::exchange(other.e_, nullptr);
  }
  return *this;
}

caf::error cuda_event::create() {
  reset();
  return CAFEX_CHECK(cudaEventCreate(&e_));
}

void cuda_event::reset() {
  if (e_ != nullptr)
    cudaEventDestroy(e_);
  e_ = nullptr;
}

caf::error wait_stream(cudaStream_t stream, std::chrono::milliseconds timeout,
                       const char* what, const std::function<caf::error()>& extra) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + timeout;
  // Spin for short operations (a decode step's all-reduce takes microseconds), then back
  // off to sleeps so a rank waiting on a slow peer does not burn a core.
  constexpr auto spin_for = std::chrono::microseconds{200};
  for (;;) {
    auto q = cudaStreamQuery(stream);
    if (q == cudaSuccess)
      return extra ? extra() : caf::none;
    if (q != cudaErrorNotReady)
      return check_call(q, "cudaStreamQuery", __FILE__, __LINE__);
    if (extra)
      if (auto err = extra())
        return err;
    auto now = clock::now();
    if (now >= deadline)
      return make_error(errc::timeout,
                        fmt::format("{} did not finish within {} ms: a peer may have died "
                                    "or the GPU is stuck",
                                    what, timeout.count()));
    if (now - start < spin_for)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds{50});
  }
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); // clear the error so later calls start clean
    return 0;
  }
  return n;
}

} // namespace cafex
