// The device side of a TP collective (CUDA builds only). `collective` (collective.hpp)
// sums host buffers and stays the interface every model sees; a collective that can also
// sum device buffers on the caller's stream implements this second interface, and a CUDA
// model finds it with dynamic_cast. Without it (solo, Gloo, the fake) a CUDA model stages
// its sums through host memory, so every collective works with every model.
#pragma once

#include <cstddef>
#include <cstdint>

#include <caf/error.hpp>
#include <cuda_runtime_api.h>

namespace cafex {

/// Device-buffer collective operations, enqueued on the caller's stream so they order
/// with the caller's kernels without extra synchronisation.
class device_collective {
public:
  virtual ~device_collective() = default;

  /// Enqueues an exact in-place int64 sum of `count` values at the *device* pointer
  /// `data` (on this rank's GPU) on `stream`. Returns once enqueued; completion and
  /// asynchronous failures are observed by wait(). Every rank enqueues the same sequence.
  virtual caf::error enqueue_all_reduce_sum(int64_t* data, size_t count,
                                            cudaStream_t stream) = 0;

  /// The same for float32 values. Every rank gets the same bits (NCCL reduces each chunk
  /// once and broadcasts it); the order is fixed for a given size and configuration.
  virtual caf::error enqueue_all_reduce_sum_f32(float* data, size_t count,
                                                cudaStream_t stream) = 0;

  /// The same for bfloat16 values (`count` 2-byte elements at `data`, the layout of
  /// __nv_bfloat16), summed by NCCL in bfloat16.
  virtual caf::error enqueue_all_reduce_sum_bf16(void* data, size_t count,
                                                 cudaStream_t stream) = 0;

  /// Enqueues an all-gather: `recv` (device, size() * `bytes`) receives every rank's
  /// `bytes` at `send`, rank r's at offset r * bytes.
  virtual caf::error enqueue_all_gather(const void* send, void* recv, size_t bytes,
                                        cudaStream_t stream) = 0;

  /// Work enqueued earlier was captured into a CUDA graph that is being launched again:
  /// the collective times it as if it were enqueued now.
  virtual void replaying_enqueued_work() {}

  /// Waits until `stream` is idle. An asynchronous error of the communicator or a missed
  /// deadline aborts it (kernels waiting on a dead peer return): the wait then fails and
  /// the group is broken for good.
  virtual caf::error wait(cudaStream_t stream) = 0;
};

} // namespace cafex
