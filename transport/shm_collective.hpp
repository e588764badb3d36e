// The same-node CPU tensor-parallel collective: every rank of the group maps one POSIX
// shared-memory segment, writes its part into its own slot and reads its peers' slots.
// No socket, no helper thread: a few microseconds for a few KB, where Gloo's TCP mesh costs
// hundreds (and stalls for milliseconds when the machine is busy).
//
// Every sum is computed in rank order (rank 0 + rank 1 + ...), whichever rank computes
// it: every rank gets the same bits, on every run. Small buffers are reduced by every rank
// over all slots (one barrier); large ones in slices, one per rank, then copied out (two
// barriers); both give the same bits. Waits spin briefly, then sleep on a futex, and are
// bounded by the group's deadline; while a rank sleeps it checks that the peers it waits
// for are alive, so a killed peer fails the call within ~20 ms instead of at the deadline.
// A rank that closes its end (destruction: teardown or recovery) fails its peers' calls
// at once. The creator removes the name once every rank has mapped it: a SIGKILLed group
// leaves nothing in /dev/shm.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/collective.hpp"

namespace cafex {

struct shm_collective_options {
  /// The segment's name, "/cafex-..." (one per group incarnation).
  std::string name;
  int rank = 0;
  int size = 1;
  /// Bounds every call (and open() waiting for the creator's segment).
  std::chrono::milliseconds timeout{30000};
  /// Bytes each rank's slot holds; larger calls go in chunks of this size.
  size_t slot_bytes = size_t{256} << 10;
  /// Calls up to this many bytes are reduced by every rank over all slots.
  size_t small_bytes = size_t{32} << 10;
  /// Bytes of each rank's registered buffer (registered_buffer(); 0: none). Larger calls
  /// over it are reduced in place, without slots.
  size_t buffer_bytes = 0;
};

class shm_collective final : public collective {
public:
  /// The most ranks one segment holds.
  static constexpr int max_ranks = 8;

  /// Rank 0 creates the segment (exclusive: a name in use is an error).
  static caf::expected<std::unique_ptr<shm_collective>>
  create(const shm_collective_options& o);
  /// The other ranks map it, waiting (bounded) for the creator to have set it up.
  static caf::expected<std::unique_ptr<shm_collective>> open(const shm_collective_options& o);

  /// Closes this rank's end: peers waiting in a call fail at once.
  ~shm_collective() override;

  shm_collective(const shm_collective&) = delete;
  shm_collective& operator=(const shm_collective&) = delete;

  /// The creator waits (bounded by the timeout) until every rank has mapped the segment,
  /// then removes its name.
  caf::error wait_mapped();

  /// Removes the name (the creator; idempotent).
  void unlink();

  int rank() const override { return opts_.rank; }
  int size() const override { return opts_.size; }
  caf::error all_reduce_sum(int64_t* data, size_t count) override;
  caf::error all_reduce_sum_f32(float* data, size_t count) override;
  caf::error all_gather(const void* in, void* out, size_t bytes) override;
  caf::error broadcast(void* data, size_t bytes, int root) override;
  /// This rank's part of the segment, opts.buffer_bytes long.
  buffer registered_buffer() override;
  const char* transport() const override { return "shm"; }

  const shm_collective_options& options() const { return opts_; }

  /// True after a failed call (the group must be rebuilt).
  bool broken() const { return broken_; }

  struct header;

private:
  explicit shm_collective(shm_collective_options o);
  static caf::expected<std::unique_ptr<shm_collective>> map(const shm_collective_options& o,
                                                            bool create);

  template <class T>
  caf::error reduce(T* data, size_t count, const char* type);
  /// One chunk of a sum: `n` elements of `data`.
  template <class T>
  caf::error reduce_chunk(T* data, size_t n, std::chrono::steady_clock::time_point deadline);
  /// A sum over every rank's registered buffer, in place: slices summed from the peers'
  /// buffers, then gathered from them (three barriers, no slot).
  template <class T>
  caf::error
  reduce_registered(T* data, size_t n, std::chrono::steady_clock::time_point deadline);
  /// Checks that every rank passed `bytes` (tagged) to the call `op`.
  caf::error check_lengths(uint64_t op, uint64_t bytes, const char* what);

  /// This call's slot (parity of the op) of rank `r`.
  char* slot(uint64_t op, int r) const;
  char* result(uint64_t op) const;
  char* region(int r) const;
  /// Publishes this rank's counter `which` (0: arrived, 1: reduced, 2: gathered) at `op`.
  void publish(int which, uint64_t op);
  /// Waits until every rank's counter `which` reached `op`.
  caf::error wait_all(int which, uint64_t op, std::chrono::steady_clock::time_point deadline);
  caf::error check_peers(int which, uint64_t op) const;
  caf::error fail(caf::error err);
  std::string who() const;

  shm_collective_options opts_;
  header* hdr_ = nullptr;
  size_t mapped_ = 0;
  bool owner_ = false;
  bool linked_ = false;
  bool broken_ = false;
  uint64_t op_ = 0;
};

/// The segment name rank 0 of `group` ("tp0/g2") creates: "/cafex-<pid>-tp-tp0-g2".
std::string shm_collective_name(int pid, const std::string& group);

/// Removes what a worker `pid` that died before its peers mapped its segment left in
/// /dev/shm (its node agent calls it when it reaps the worker); answers how many.
int remove_shm_collectives_of(int pid);

/// The segment size for `size` ranks of `slot_bytes` (header, two slots per rank, two
/// result areas, a registered buffer per rank), for /dev/shm sizing and the logs.
size_t shm_collective_bytes(int size, size_t slot_bytes, size_t buffer_bytes = 0);

} // namespace cafex
