// RAII for CUDA handles (CUDA builds only): device and pinned host buffers, streams,
// events, and the one way cafex waits for a stream: polling against a deadline, never a
// blocking synchronize, so a kernel stuck on a dead NCCL peer cannot hang a rank.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <utility>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <cuda_runtime_api.h>

namespace cafex {

/// Device memory. Grows with reserve(); contents are not kept when it grows.
class device_buffer {
public:
  device_buffer() = default;
  ~device_buffer() { reset(); }
  device_buffer(device_buffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  device_buffer& operator=(device_buffer&& other) noexcept;
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  /// At least `bytes` bytes on the current device (reallocates when smaller).
  caf::error reserve(size_t bytes);
  void reset();

  void* data() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

/// Page-locked host memory: device-to-host copies into it are truly asynchronous.
class pinned_buffer {
public:
  pinned_buffer() = default;
  ~pinned_buffer() { reset(); }
  pinned_buffer(pinned_buffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  pinned_buffer& operator=(pinned_buffer&& other) noexcept;
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;

  caf::error reserve(size_t bytes);
  void reset();

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

/// A non-blocking stream of the device current at create().
class cuda_stream {
public:
  cuda_stream() = default;
  ~cuda_stream() { reset(); }
  cuda_stream(cuda_stream&& other) noexcept : s_(std::exchange(other.s_, nullptr)) {}
  cuda_stream& operator=(cuda_stream&& other) noexcept;
  cuda_stream(const cuda_stream&) = delete;
  cuda_stream& operator=(const cuda_stream&) = delete;

  caf::error create();
  void reset();
  cudaStream_t get() const { return s_; }

private:
  cudaStream_t s_ = nullptr;
};

/// A timing event (cudaEventDefault).
class cuda_event {
public:
  cuda_event() = default;
  ~cuda_event() { reset(); }
  cuda_event(cuda_event&& other) noexcept : e_(std::exchange(other.e_, nullptr)) {}
  cuda_event& operator=(cuda_event&& other) noexcept;
  cuda_event(const cuda_event&) = delete;
  cuda_event& operator=(const cuda_event&) = delete;

  caf::error create();
  void reset();
  cudaEvent_t get() const { return e_; }

private:
  cudaEvent_t e_ = nullptr;
};

/// Polls cudaStreamQuery (and `extra`, e.g. ncclCommGetAsyncError, when given) until the
/// stream is idle, a poll reports an error, or `timeout` passes (errc::timeout naming
/// `what`). Spins briefly, then sleeps between polls so a long wait costs no core.
caf::error wait_stream(cudaStream_t stream, std::chrono::milliseconds timeout,
                       const char* what, const std::function<caf::error()>& extra = {});

/// Number of CUDA devices; 0 when there is no device or no driver (never an error: tests
/// use it to skip).
int cuda_device_count();

} // namespace cafex
