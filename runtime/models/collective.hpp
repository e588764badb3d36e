// The tensor-parallel collective a model runner sees. Pure interface: Gloo (CPU), NCCL
// (GPU) and the in-process fake implement it in transport/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <caf/error.hpp>

namespace cafex {

/// A TP group: `size()` ranks that combine buffers together. Every rank makes the same
/// calls with buffers of the same length, in the same order. Every call is in place over
/// the caller's host buffer, bounded by the group's deadline, and fails with a typed error
/// (errc::timeout, errc::transport_failed, errc::invalid_argument) that names the group;
/// after a failure the group is broken and must be rebuilt.
class collective {
public:
  virtual ~collective() = default;

  /// This rank's index inside the group.
  virtual int rank() const = 0;

  /// Number of ranks in the group.
  virtual int size() const = 0;

  /// Sums `count` values element-wise across the group, in place. Integer sums are exact
  /// and so independent of the order in which ranks contribute: the reference model
  /// reduces in fixed point to keep tokens identical for every TP size.
  virtual caf::error all_reduce_sum(int64_t* data, size_t count) = 0;

  /// Sums `count` float32 values element-wise, in place. Every rank gets the same bits;
  /// transports that promise a fixed order (shared memory: rank 0 + rank 1 + ...) give
  /// the same bits on every run too. The default fails: the transport has no float sum.
  virtual caf::error all_reduce_sum_f32(float* data, size_t count);

  /// Gathers `bytes` bytes from every rank: `out` (size() * bytes) holds rank r's `in` at
  /// offset r * bytes on every rank (vocab-parallel logits). `in` may alias this rank's
  /// part of `out`. The default goes through an exact int64 sum of zero-padded words.
  virtual caf::error all_gather(const void* in, void* out, size_t bytes);

  /// Copies `bytes` bytes of rank `root`'s `data` into every rank's `data`. The default
  /// goes through an exact int64 sum in which every other rank adds zeros.
  virtual caf::error broadcast(void* data, size_t bytes, int root);

  /// Memory of this rank that the group reduces without staging it: a model that writes
  /// its partial sums straight into it and passes `data` to all_reduce_sum_f32 (or
  /// all_reduce_sum) saves the copies in and out of the transport's buffers (the
  /// shared-memory group reduces it in place from its peers' buffers, as vLLM's custom
  /// all-reduce does with registered buffers). Every rank must then pass its own buffer
  /// to the same call. {nullptr, 0} when the transport has none (the default). Valid
  /// until the group is rebuilt: ask again for each step.
  struct buffer {
    void* data = nullptr;
    size_t bytes = 0;
  };
  virtual buffer registered_buffer() { return {}; }
  /// The transport under this group ("solo", "shm", "gloo", "nccl", "fake"), for
  /// dataflow_stats() and the logs.
  virtual const char* transport() const { return "unknown"; }
};

/// Checks a CPU TP transport choice (executor_options::tp_transport, --tp-transport):
/// "auto" (shared memory when every rank of the group is on one node, else the TCP mesh),
/// "shm", "tcp" or "gloo". errc::invalid_argument naming the valid values otherwise.
caf::error check_tp_transport(const std::string& choice);

/// The collective of a group of one: nothing to exchange.
class solo_collective final : public collective {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  caf::error all_reduce_sum(int64_t*, size_t) override { return caf::none; }
  caf::error all_reduce_sum_f32(float*, size_t) override { return caf::none; }
  caf::error all_gather(const void* in, void* out, size_t bytes) override;
  caf::error broadcast(void*, size_t, int root) override;
  const char* transport() const override { return "solo"; }
};

} // namespace cafex
