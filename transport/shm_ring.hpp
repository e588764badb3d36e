// A same-node message ring in POSIX shared memory: one producer process, one consumer
// process, futex wake-ups (a system call only when the peer sleeps; a reader may spin a
// bounded time first), every wait bounded by a deadline. It carries
// the dataflow's hot path on one node (commands, stage hand-offs with their tensor
// bytes, results) at a few microseconds per hop instead of a TCP round trip.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <initializer_list>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace cafex {

/// A 32-bit counter in shared memory that sleepers wait on (a doorbell shared by several
/// rings, so one reader can wait for any of them).
class shm_doorbell {
public:
  static caf::expected<std::unique_ptr<shm_doorbell>> create(const std::string& name);
  static caf::expected<std::unique_ptr<shm_doorbell>> open(const std::string& name);
  ~shm_doorbell();
  uint32_t value() const;
  void ring();
  /// Sleeps until the value differs from `seen` or `timeout` passes, after spinning up
  /// to `spin` on it.
  void wait(uint32_t seen, std::chrono::microseconds timeout,
            std::chrono::microseconds spin = std::chrono::microseconds{0}) const;
  /// The creator removes the name once every peer has opened it (see shm_ring::unlink).
  void unlink();

private:
  struct words;
  shm_doorbell() = default;
  std::string name_;
  bool owner_ = false;
  words* words_ = nullptr;
};

/// A row of 64-bit values in shared memory that one process writes and others read
/// without waking anyone (each rank's last finished step, for a deadline's message).
class shm_board {
public:
  static caf::expected<std::unique_ptr<shm_board>> create(const std::string& name,
                                                          size_t slots);
  static caf::expected<std::unique_ptr<shm_board>> open(const std::string& name);
  ~shm_board();
  void set(size_t slot, uint64_t value);
  uint64_t get(size_t slot) const; ///< 0 for a slot past the end
  void unlink();

private:
  shm_board() = default;
  std::string name_;
  bool owner_ = false;
  size_t size_ = 0;
  std::atomic<uint64_t>* slots_ = nullptr;
};

class shm_ring {
public:
  /// Creates the segment `name` ("/cafex-..."); the creator unlinks it when destroyed.
  static caf::expected<std::unique_ptr<shm_ring>> create(const std::string& name,
                                                         size_t capacity);
  /// Opens a segment another process created.
  static caf::expected<std::unique_ptr<shm_ring>> open(const std::string& name);
  ~shm_ring();
  shm_ring(const shm_ring&) = delete;
  shm_ring& operator=(const shm_ring&) = delete;

  /// Appends one message made of `parts`; waits while the ring is full. Rings `bell`
  /// (if any) after the write.
  caf::error write(std::initializer_list<std::pair<const void*, size_t>> parts,
                   std::chrono::milliseconds timeout, shm_doorbell* bell = nullptr);

  /// Waits for the next message.
  caf::expected<std::vector<char>> read(std::chrono::milliseconds timeout);
  /// Waits for the next message into `out` (its capacity is reused), spinning up to
  /// `spin` before the first sleep.
  caf::error read(std::vector<char>& out, std::chrono::milliseconds timeout,
                  std::chrono::microseconds spin = std::chrono::microseconds{0});

  /// Takes the next message if there is one.
  bool try_read(std::vector<char>& out);

  /// Marks the ring closed: readers and writers waiting on it return at once.
  void close();
  bool closed() const;
  /// The creator removes the name from /dev/shm once every peer has opened the ring: the
  /// mappings stay valid and the memory goes with the last process that maps it, so a
  /// SIGKILLed driver leaves nothing behind. Later open() calls of the name fail.
  void unlink();
  const std::string& name() const { return name_; }
  size_t capacity() const;

private:
  struct header;
  shm_ring() = default;
  void copy_in(uint64_t pos, const void* data, size_t n);
  void copy_out(uint64_t pos, void* data, size_t n) const;
  std::string name_;
  bool owner_ = false;
  size_t map_size_ = 0;
  header* hdr_ = nullptr;
  char* data_ = nullptr;
};

} // namespace cafex
