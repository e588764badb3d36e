// The GPU tensor-parallel collective and pipeline point-to-point channel over NCCL
// (CUDA builds only). Ranks meet through the driver's rendezvous store: rank 0 creates
// the NCCL unique id and stores it under "<group>/nccl_unique_id", the others read it
// with a deadline. Communicators are nonblocking (ncclConfig_t::blocking = 0), so no
// call here waits inside NCCL. Operations are stream-ordered: an enqueue returns at once
// and arms the group's watchdog thread (comm_watchdog.hpp), which probes
// ncclCommGetAsyncError every few milliseconds while work is outstanding and aborts the
// communicator (ncclCommAbort, releasing kernels stuck on a dead peer) on an asynchronous
// error or when the work misses op_timeout. The model thread waits once per step, by
// polling its stream only. After an abort the group is broken and must be recreated
// under a new group name.
//
// Buffers: collective::all_reduce_sum keeps its host-buffer contract (staged through a
// device buffer on the group's own stream); the device_collective methods and send/recv
// take *device* pointers on this rank's GPU and the caller's stream.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nccl.h>

#include "runtime/models/collective.hpp"
#include "runtime/models/cuda/cuda_collective.hpp"
#include "runtime/models/cuda/cuda_memory.hpp"
#include "transport/comm_watchdog.hpp"
#include "transport/rendezvous_store.hpp"

namespace cafex {

struct nccl_options {
  /// Key prefix of this group in the store, e.g. "nccl/tp0" or "nccl/pp0-1". Unique per
  /// group *incarnation*: a group rebuilt after a failure needs a new name.
  std::string group = "tp";
  /// This rank's index in the group and the group's size.
  int rank = 0;
  int size = 1;
  /// CUDA device of this rank; -1 takes the calling thread's current device.
  int device = -1;
  /// Bounds the whole initialisation (rendezvous and NCCL's connection setup).
  std::chrono::milliseconds timeout{30000};
  /// Bounds every later wait for an operation (wait(), the blocking calls, finalize):
  /// outstanding work older than this aborts the communicator.
  std::chrono::milliseconds op_timeout{30000};
  /// How often the watchdog probes the communicator while work is outstanding: how late
  /// a dead peer's asynchronous error is acted on.
  std::chrono::milliseconds watchdog_period{5};
};

/// A connected NCCL group. Not thread-safe: one thread drives it (the model's).
class nccl_collective final : public collective, public device_collective {
public:
  /// Finalizes and destroys the communicator, or aborts it when broken or when
  /// finalizing misses the deadline.
  ~nccl_collective() override;

  nccl_collective(const nccl_collective&) = delete;
  nccl_collective& operator=(const nccl_collective&) = delete;

  int rank() const override { return opts_.rank; }
  int size() const override { return opts_.size; }

  /// Host buffers: copies in, sums on the group's stream, copies back, waits.
  caf::error all_reduce_sum(int64_t* data, size_t count) override;
  const char* transport() const override { return "nccl"; }

  /// Device buffers on the caller's stream (see device_collective).
  caf::error enqueue_all_reduce_sum(int64_t* data, size_t count, cudaStream_t stream) override;
  caf::error enqueue_all_reduce_sum_f32(float* data, size_t count,
                                        cudaStream_t stream) override;
  caf::error enqueue_all_gather(const void* send, void* recv, size_t bytes,
                                cudaStream_t stream) override;
  caf::error enqueue_all_reduce_sum_bf16(void* data, size_t count,
                                         cudaStream_t stream) override;
  caf::error wait(cudaStream_t stream) override;
  void replaying_enqueued_work() override { enqueued(); }

  /// Enqueues a send of `bytes` bytes at device pointer `data` to group rank `peer` on
  /// `stream`; the peer enqueues a recv of the same size. Completion: wait(stream).
  caf::error enqueue_send(const void* data, size_t bytes, int peer, cudaStream_t stream);

  /// Enqueues a receive of `bytes` bytes from `peer` into device pointer `data`.
  caf::error enqueue_recv(void* data, size_t bytes, int peer, cudaStream_t stream);

  /// enqueue_send / enqueue_recv on the group's own stream, then wait.
  caf::error send(const void* data, size_t bytes, int peer);
  caf::error recv(void* data, size_t bytes, int peer);

  /// Aborts the communicator now; later calls fail at once. Idempotent.
  void abort();

  /// True after a failure, abort(), or the watchdog's abort.
  bool broken() const { return broken_ || (watchdog_ && watchdog_->fired()); }

  const std::string& group() const { return opts_.group; }
  int device() const { return device_; }
  /// The group's own stream (used by the host-buffer and blocking calls).
  cudaStream_t stream() const { return stream_.get(); }

private:
  friend caf::expected<std::unique_ptr<nccl_collective>>
  make_nccl_collective(kv_store& store, const nccl_options& opts);

  nccl_collective(nccl_options opts, int device);

  /// "nccl group 'tp0' rank 1/2 (GPU 1)".
  std::string who() const;

  /// Fails at once when broken; binds the calling thread to the group's device. Called
  /// under the watchdog's guard.
  caf::error usable(const char* what);

  /// Aborts comm_ unless already aborted; under the watchdog's guard.
  void abort_locked();

  /// Enqueued: the watchdog times the work from now.
  void enqueued();

  /// After an enqueue that may return ncclInProgress: polls until NCCL accepted it.
  caf::error settle(const char* what);

  caf::error enqueue_all_reduce(void* data, size_t count, ncclDataType_t type,
                                cudaStream_t stream);

  /// Under the guard: checks the group, runs `enqueue` (an NCCL call) unless `empty`,
  /// settles it; then arms the watchdog. A failure aborts the group.
  template <class Enqueue>
  caf::error locked_enqueue(const char* what, bool empty, Enqueue&& enqueue);

  /// Marks the group broken, aborts, and returns `err` with the group's context.
  caf::error fail(const char* what, const caf::error& err);

  nccl_options opts_;
  int device_ = 0;
  ncclComm_t comm_ = nullptr; ///< written under the watchdog's guard once it runs
  bool broken_ = false;
  std::unique_ptr<comm_watchdog> watchdog_; ///< after comm_ exists
  cuda_stream stream_;
  device_buffer staging_;      ///< host-buffer all_reduce_sum: device side
  pinned_buffer host_staging_; ///< and its pinned host side
};

/// Creates rank `opts.rank` of the group through `store` (only used during the call).
/// Fails with errc::timeout (naming group, rank and what was missing) when the unique id
/// or the peers do not show up within opts.timeout, errc::transport_failed when NCCL or
/// the store fail, errc::invalid_argument for inconsistent options.
caf::expected<std::unique_ptr<nccl_collective>> make_nccl_collective(kv_store& store,
                                                                     const nccl_options& opts);

} // namespace cafex
