#include "transport/shm_collective.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <new>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"
#include "transport/shm_futex.hpp"

namespace cafex {

namespace {

using clock = std::chrono::steady_clock;

constexpr uint64_t segment_magic = 0x6361666578636f6cULL; // "cafexcol"
constexpr uint32_t segment_version = 2;
/// How long a waiter spins before it sleeps: a peer a few microseconds behind costs no
/// system call, a peer that is far behind costs this much CPU.
constexpr auto spin_for = std::chrono::microseconds{50};
/// A sleeping waiter wakes at least this often to check that its peers are alive.
constexpr auto peer_check = std::chrono::milliseconds{20};

struct alignas(64) counter {
  std::atomic<uint64_t> value;
};

constexpr size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

/// True when the process `pid` has ended (a zombie counts: it runs no more).
bool process_ended(pid_t pid) {
  if (pid <= 0)
    return false;
  if (kill(pid, 0) != 0)
    return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line))
    return false;
  auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size())
    return false;
  char state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

} // namespace

struct shm_collective::header {
  std::atomic<uint64_t> magic;
  uint32_t version;
  int32_t size;
  uint64_t slot_bytes;
  uint64_t buffer_bytes;
  /// Bumped by every publish and by close: the futex word every waiter sleeps on.
  std::atomic<uint32_t> bell;
  std::atomic<uint32_t> sleepers;
  /// -1, or the rank that closed its end first.
  std::atomic<int32_t> closed_by;
  std::atomic<int32_t> pid[max_ranks];
  /// Per op parity and rank: the bytes of its part (all ranks must agree).
  std::atomic<uint64_t> bytes[2][max_ranks];
  /// [0]: the last op whose input each rank wrote; [1]: whose slice each rank reduced;
  /// [2]: whose sums each rank gathered from its peers' registered buffers.
  counter count[3][max_ranks];
};

namespace {

size_t header_bytes() {
  return round_up(sizeof(shm_collective::header), 4096);
}

} // namespace

std::string shm_collective_name(int pid, const std::string& group) {
  std::string name = "/cafex-" + std::to_string(pid) + "-tp-";
  for (char c : group)
    name += (std::isalnum(static_cast<unsigned char>(c)) != 0) ? c : '-';
  return name;
}

int remove_shm_collectives_of(int pid) {
  const std::string prefix = "cafex-" + std::to_string(pid) + "-tp-";
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    auto name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0 && shm_unlink(("/" + name).c_str()) == 0)
      ++removed;
  }
  return removed;
}

size_t shm_collective_bytes(int size, size_t slot_bytes, size_t buffer_bytes) {
  return header_bytes() + slot_bytes * (2 * static_cast<size_t>(size) + 2)
         + buffer_bytes * static_cast<size_t>(size);
}

shm_collective::shm_collective(shm_collective_options o) : opts_(std::move(o)) {}

std::string shm_collective::who() const {
  return "shm group '" + opts_.name + "' rank " + std::to_string(opts_.rank) + "/"
         + std::to_string(opts_.size);
}

caf::expected<std::unique_ptr<shm_collective>>
shm_collective::map(const shm_collective_options& o, bool create) {
  auto who = "shm group '" + o.name + "' rank " + std::to_string(o.rank) + "/"
             + std::to_string(o.size);
  if (o.size < 1 || o.size > max_ranks || o.rank < 0 || o.rank >= o.size)
    return make_error(errc::invalid_argument, who + ": a shared-memory group holds 1 to "
                                                + std::to_string(max_ranks) + " ranks");
  if (o.name.size() < 2 || o.name[0] != '/' || o.name.find('/', 1) != std::string::npos)
    return make_error(errc::invalid_argument, who + ": the name must look like /cafex-...");
  if (o.slot_bytes < 4096 || o.slot_bytes % 64 != 0 || o.buffer_bytes % 64 != 0
      || o.timeout.count() <= 0)
    return make_error(errc::invalid_argument,
                      who
                        + ": slot_bytes must be a multiple of 64 of at least 4096, "
                          "buffer_bytes a multiple of 64 and the timeout positive");
  const size_t total = shm_collective_bytes(o.size, o.slot_bytes, o.buffer_bytes);
  int fd = create ? shm_open(o.name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600)
                  : shm_open(o.name.c_str(), O_RDWR, 0600);
  if (fd < 0)
    return make_error(errc::transport_failed,
                      who + ": " + (create ? "creating" : "opening")
                        + " the segment: " + errno_text(errno)
                        + (create ? "" : " (its creator, rank 0, may have died)"));
  std::unique_ptr<shm_collective> g{new shm_collective(o)};
  g->owner_ = create;
  g->linked_ = create;
  auto fail_fd = [&](const std::string& what) {
    auto err = make_error(errc::transport_failed, who + ": " + what + ": " + errno_text(errno)
                                                    + "; is /dev/shm full? ("
                                                    + std::to_string(total)
                                                    + " bytes needed)");
    ::close(fd);
    if (create)
      shm_unlink(o.name.c_str());
    g->linked_ = false;
    return err;
  };
  if (create && ftruncate(fd, static_cast<off_t>(total)) != 0)
    return fail_fd("sizing the segment");
  struct stat sb {};
  if (!create && (fstat(fd, &sb) != 0 || static_cast<size_t>(sb.st_size) != total)) {
    ::close(fd);
    return make_error(errc::transport_failed,
                      who + ": the segment has " + std::to_string(sb.st_size)
                        + " bytes, not the " + std::to_string(total)
                        + " this group needs: ranks disagree on the group's shape");
  }
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return fail_fd("mapping the segment");
  ::close(fd);
  g->mapped_ = total;
  g->hdr_ = static_cast<header*>(p);
  auto* h = g->hdr_;
  if (create) {
    new (h) header; // the zero-filled page is a valid (zero) state for every atomic
    h->size = o.size;
    h->slot_bytes = o.slot_bytes;
    h->buffer_bytes = o.buffer_bytes;
    h->closed_by.store(-1);
    h->version = segment_version;
    std::atomic_thread_fence(std::memory_order_release);
    h->magic.store(segment_magic, std::memory_order_release);
  } else if (h->magic.load(std::memory_order_acquire) != segment_magic
             || h->version != segment_version || h->size != o.size
             || h->slot_bytes != o.slot_bytes || h->buffer_bytes != o.buffer_bytes) {
    return make_error(errc::transport_failed,
                      who
                        + ": the segment is not this group's (another cafex version, or "
                          "a different size)");
  }
  h->pid[o.rank].store(static_cast<int32_t>(getpid()));
  h->bell.fetch_add(1);
  futex_wake(&h->bell);
  return g;
}

caf::expected<std::unique_ptr<shm_collective>>
shm_collective::create(const shm_collective_options& o) {
  return map(o, true);
}

caf::expected<std::unique_ptr<shm_collective>>
shm_collective::open(const shm_collective_options& o) {
  return map(o, false);
}

shm_collective::~shm_collective() {
  if (hdr_) {
    int32_t none = -1;
    hdr_->closed_by.compare_exchange_strong(none, opts_.rank);
    hdr_->bell.fetch_add(1);
    futex_wake(&hdr_->bell);
    munmap(hdr_, mapped_);
  }
  if (linked_)
    shm_unlink(opts_.name.c_str());
}

caf::error shm_collective::wait_mapped() {
  const auto deadline = clock::now() + opts_.timeout;
  auto next_note = clock::now() + std::chrono::seconds{1};
  for (;;) {
    uint32_t seen = hdr_->bell.load();
    int missing = -1;
    for (int r = 0; r < opts_.size && missing < 0; ++r)
      if (hdr_->pid[r].load() == 0)
        missing = r;
    if (missing < 0) {
      unlink();
      return caf::none;
    }
    auto now = clock::now();
    if (now >= deadline)
      return make_error(errc::timeout, who() + ": rank " + std::to_string(missing)
                                         + " did not map the segment within "
                                         + std::to_string(opts_.timeout.count()) + " ms");
    if (now >= next_note) {
      spdlog::info("{}: waiting for rank {} to map the segment", who(), missing);
      next_note = now + std::chrono::seconds{1};
    }
    hdr_->sleepers.fetch_add(1);
    futex_wait(&hdr_->bell, seen,
               std::chrono::duration_cast<std::chrono::microseconds>(
                 std::min<clock::duration>(peer_check, deadline - now)));
    hdr_->sleepers.fetch_sub(1);
  }
}

void shm_collective::unlink() {
  if (linked_)
    shm_unlink(opts_.name.c_str());
  linked_ = false;
}

char* shm_collective::slot(uint64_t op, int r) const {
  auto base = reinterpret_cast<char*>(hdr_) + header_bytes();
  return base
         + opts_.slot_bytes
             * ((op & 1) * static_cast<size_t>(opts_.size) + static_cast<size_t>(r));
}

char* shm_collective::result(uint64_t op) const {
  auto base = reinterpret_cast<char*>(hdr_) + header_bytes();
  return base + opts_.slot_bytes * (2 * static_cast<size_t>(opts_.size) + (op & 1));
}

char* shm_collective::region(int r) const {
  auto base = reinterpret_cast<char*>(hdr_) + header_bytes();
  return base + opts_.slot_bytes * (2 * static_cast<size_t>(opts_.size) + 2)
         + opts_.buffer_bytes * static_cast<size_t>(r);
}

collective::buffer shm_collective::registered_buffer() {
  if (opts_.buffer_bytes == 0)
    return {};
  return {region(opts_.rank), opts_.buffer_bytes};
}

void shm_collective::publish(int which, uint64_t op) {
  hdr_->count[which][opts_.rank].value.store(op, std::memory_order_release);
  hdr_->bell.fetch_add(1);
  if (hdr_->sleepers.load() > 0)
    futex_wake(&hdr_->bell);
}

caf::error shm_collective::check_peers(int which, uint64_t op) const {
  for (int r = 0; r < opts_.size; ++r) {
    if (hdr_->count[which][r].value.load(std::memory_order_acquire) >= op)
      continue;
    auto pid = hdr_->pid[r].load();
    if (process_ended(pid))
      return make_error(errc::transport_failed,
                        who() + ": rank " + std::to_string(r) + " (pid " + std::to_string(pid)
                          + ") died in the middle of a collective; recreate the group");
  }
  return caf::none;
}

caf::error shm_collective::wait_all(int which, uint64_t op, clock::time_point deadline) {
  auto done = [&] {
    for (int r = 0; r < opts_.size; ++r)
      if (hdr_->count[which][r].value.load(std::memory_order_acquire) < op)
        return false;
    return true;
  };
  auto closed = [&]() -> caf::error {
    auto by = hdr_->closed_by.load();
    if (by < 0)
      return caf::none;
    return make_error(errc::transport_failed,
                      who() + ": rank " + std::to_string(by)
                        + " closed the group (a teardown or a recovery); recreate it");
  };
  const auto spin_until = clock::now() + spin_for;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done())
        return caf::none;
      cpu_relax();
    }
    if (auto err = closed())
      return err;
    if (clock::now() >= spin_until)
      break;
  }
  auto next_check = clock::now() + peer_check;
  for (;;) {
    hdr_->sleepers.fetch_add(1);
    uint32_t seen = hdr_->bell.load();
    if (done()) {
      hdr_->sleepers.fetch_sub(1);
      return caf::none;
    }
    auto now = clock::now();
    if (auto err = closed()) {
      hdr_->sleepers.fetch_sub(1);
      return err;
    }
    if (now >= deadline) {
      hdr_->sleepers.fetch_sub(1);
      return make_error(errc::timeout,
                        who() + ": a peer did not reach the collective within "
                          + std::to_string(opts_.timeout.count())
                          + " ms; it may be stuck or the ranks called in different orders");
    }
    auto nap = std::min<clock::duration>(peer_check, deadline - now);
    futex_wait(&hdr_->bell, seen, std::chrono::duration_cast<std::chrono::microseconds>(nap));
    hdr_->sleepers.fetch_sub(1);
    if (clock::now() >= next_check) {
      if (auto err = check_peers(which, op))
        return err;
      next_check = clock::now() + peer_check;
    }
  }
}

caf::error shm_collective::fail(caf::error err) {
  broken_ = true;
  return err;
}

namespace {

/// Elements summed per block: the block's partial sum stays in L1 while every part is added.
constexpr size_t sum_block_bytes = 4096;

/// out[i] = parts[0][i] + parts[1][i] + ... for i in [lo, hi), added in rank order, into
/// each of `outs` (one or two). A part may alias an out: each block is summed into a local
/// buffer first, so what a part reads is never what this call already wrote.
template <class T>
void sum_in_rank_order(T* const* outs, int n_outs, const T* const* parts, int n_parts,
                       size_t lo, size_t hi) {
  constexpr size_t block = sum_block_bytes / sizeof(T);
  alignas(64) T acc[block];
  for (size_t b = lo; b < hi; b += block) {
    const size_t n = std::min(block, hi - b);
    const T* p0 = parts[0] + b;
    const T* p1 = parts[1] + b;
    for (size_t i = 0; i < n; ++i)
      acc[i] = p0[i] + p1[i];
    for (int p = 2; p < n_parts; ++p) {
      const T* src = parts[p] + b;
      for (size_t i = 0; i < n; ++i)
        acc[i] += src[i];
    }
    for (int o = 0; o < n_outs; ++o)
      std::memcpy(outs[o] + b, acc, n * sizeof(T));
  }
}

/// Rank `r`'s slice [first, second) of `n` elements shared by `ranks`. Slices start on
/// cache lines: a rank writing next to a slice its peers read would bounce the line.
template <class T>
std::pair<size_t, size_t> slice_of(size_t n, size_t ranks, size_t r) {
  constexpr size_t line = 64 / sizeof(T);
  const size_t per = ((n + ranks - 1) / ranks + line - 1) / line * line;
  return {std::min(n, per * r), std::min(n, per * (r + 1))};
}

} // namespace

template <class T>
caf::error shm_collective::reduce_chunk(T* data, size_t n, clock::time_point deadline) {
  const uint64_t op = ++op_;
  const size_t bytes = n * sizeof(T);
  const int me = opts_.rank;
  const auto ranks = static_cast<size_t>(opts_.size);
  const bool small = bytes <= opts_.small_bytes;
  // Large calls: each rank sums one slice. A rank's own slice of its input is read only by
  // itself (from `data`), so only the others' slices go through its slot.
  const auto [lo, hi] = slice_of<T>(n, ranks, static_cast<size_t>(me));
  auto* mine = reinterpret_cast<T*>(slot(op, me));
  if (small) {
    std::memcpy(mine, data, bytes);
  } else {
    std::memcpy(mine, data, lo * sizeof(T));
    std::memcpy(mine + hi, data + hi, (n - hi) * sizeof(T));
  }
  hdr_->bytes[op & 1][me].store(bytes, std::memory_order_relaxed);
  publish(0, op);
  if (auto err = wait_all(0, op, deadline))
    return fail(std::move(err));
  if (auto err = check_lengths(op, bytes, "all-reduce"))
    return fail(std::move(err));
  const T* parts[max_ranks];
  for (int r = 0; r < opts_.size; ++r)
    parts[r] = r == me ? data : reinterpret_cast<const T*>(slot(op, r));
  if (small) {
    T* outs[] = {data};
    sum_in_rank_order(outs, 1, parts, opts_.size, 0, n);
    return caf::none;
  }
  // The same formula as above, over this rank's slice, into the shared result and `data`.
  auto* out = reinterpret_cast<T*>(result(op));
  T* outs[] = {out, data};
  sum_in_rank_order(outs, 2, parts, opts_.size, lo, hi);
  publish(1, op);
  if (auto err = wait_all(1, op, deadline))
    return fail(std::move(err));
  std::memcpy(data, out, lo * sizeof(T));
  std::memcpy(data + hi, out + hi, (n - hi) * sizeof(T));
  return caf::none;
}

namespace {

/// Marks the length a rank publishes for a call over its registered buffer: a rank that
/// passes its own memory to the same call is caught as a length mismatch.
constexpr uint64_t registered_tag = uint64_t{1} << 63;

} // namespace

caf::error shm_collective::check_lengths(uint64_t op, uint64_t bytes, const char* what) {
  for (int r = 0; r < opts_.size; ++r) {
    const uint64_t theirs = hdr_->bytes[op & 1][r].load(std::memory_order_relaxed);
    if (theirs == bytes)
      continue;
    if ((theirs & ~registered_tag) == (bytes & ~registered_tag))
      return make_error(
        errc::transport_failed,
        who() + ": rank " + std::to_string(r) + " passed "
          + ((theirs & registered_tag) != 0 ? "its registered buffer" : "its own memory")
          + " to the same " + what + " and this rank "
          + ((bytes & registered_tag) != 0 ? "its registered buffer" : "its own memory")
          + "; every rank must pass the same kind of buffer");
    return make_error(errc::transport_failed,
                      who() + ": rank " + std::to_string(r)
                        + " passed a buffer of another length to the same " + what
                        + "; every rank must make the same calls");
  }
  return caf::none;
}

template <class T>
caf::error shm_collective::reduce_registered(T* data, size_t n, clock::time_point deadline) {
  const uint64_t op = ++op_;
  const size_t bytes = n * sizeof(T);
  const int me = opts_.rank;
  const auto ranks = static_cast<size_t>(opts_.size);
  auto lo_of = [&](size_t r) { return slice_of<T>(n, ranks, r).first; };
  auto hi_of = [&](size_t r) { return slice_of<T>(n, ranks, r).second; };
  hdr_->bytes[op & 1][me].store(bytes | registered_tag, std::memory_order_relaxed);
  publish(0, op);
  if (auto err = wait_all(0, op, deadline))
    return fail(std::move(err));
  if (auto err = check_lengths(op, bytes | registered_tag, "all-reduce"))
    return fail(std::move(err));
  const T* parts[max_ranks];
  for (int r = 0; r < opts_.size; ++r)
    parts[r] = reinterpret_cast<const T*>(region(r));
  // This rank's slice: summed from every buffer (the same formula as reduce_chunk) into
  // its own; the peers read only their own slices of this buffer meanwhile.
  T* outs[] = {data};
  const auto mine = static_cast<size_t>(me);
  sum_in_rank_order(outs, 1, parts, opts_.size, lo_of(mine), hi_of(mine));
  publish(1, op);
  if (auto err = wait_all(1, op, deadline))
    return fail(std::move(err));
  for (size_t r = 0; r < ranks; ++r)
    if (r != mine && lo_of(r) < hi_of(r))
      std::memcpy(data + lo_of(r), parts[r] + lo_of(r), (hi_of(r) - lo_of(r)) * sizeof(T));
  // The caller may write its buffer again once this returns: the peers must have read
  // this rank's slice first.
  publish(2, op);
  if (auto err = wait_all(2, op, deadline))
    return fail(std::move(err));
  return caf::none;
}

template <class T>
caf::error shm_collective::reduce(T* data, size_t count, const char* type) {
  if (broken_)
    return make_error(errc::transport_failed,
                      who() + ": all_reduce_sum of " + type
                        + " refused: the group failed earlier; recreate it");
  if (opts_.size == 1 || count == 0)
    return caf::none;
  const auto deadline = clock::now() + opts_.timeout;
  const auto* mine = region(opts_.rank);
  // Over the registered buffer, calls above small_bytes skip the slots (small ones cost
  // less through them: one barrier); every rank decides alike, the lengths being equal.
  if (opts_.buffer_bytes > 0 && reinterpret_cast<const char*>(data) == mine
      && count * sizeof(T) > opts_.small_bytes) {
    if (count * sizeof(T) > opts_.buffer_bytes)
      return make_error(errc::invalid_argument,
                        who() + ": all_reduce_sum of " + std::to_string(count) + " " + type
                          + " over the registered buffer runs past its "
                          + std::to_string(opts_.buffer_bytes) + " bytes");
    return reduce_registered(data, count, deadline);
  }
  const size_t per_chunk = opts_.slot_bytes / sizeof(T);
  for (size_t done = 0; done < count; done += per_chunk)
    if (auto err = reduce_chunk(data + done, std::min(per_chunk, count - done), deadline))
      return err;
  return caf::none;
}

caf::error shm_collective::all_reduce_sum(int64_t* data, size_t count) {
  return reduce(data, count, "int64");
}

caf::error shm_collective::all_reduce_sum_f32(float* data, size_t count) {
  return reduce(data, count, "float32");
}

caf::error shm_collective::all_gather(const void* in, void* out, size_t bytes) {
  if (broken_)
    return make_error(errc::transport_failed,
                      who() + ": all_gather refused: the group failed earlier; recreate it");
  if (bytes == 0)
    return caf::none;
  const auto deadline = clock::now() + opts_.timeout;
  auto* dst = static_cast<char*>(out);
  const auto* src = static_cast<const char*>(in);
  for (size_t off = 0; off < bytes; off += opts_.slot_bytes) {
    const size_t n = std::min(opts_.slot_bytes, bytes - off);
    const uint64_t op = ++op_;
    std::memcpy(slot(op, opts_.rank), src + off, n);
    hdr_->bytes[op & 1][opts_.rank].store(n, std::memory_order_relaxed);
    publish(0, op);
    if (auto err = wait_all(0, op, deadline))
      return fail(std::move(err));
    for (int r = 0; r < opts_.size; ++r) {
      if (hdr_->bytes[op & 1][r].load(std::memory_order_relaxed) != n)
        return fail(make_error(errc::transport_failed,
                               who() + ": rank " + std::to_string(r)
                                 + " passed another length to the same all_gather"));
      std::memcpy(dst + bytes * static_cast<size_t>(r) + off, slot(op, r), n);
    }
  }
  return caf::none;
}

caf::error shm_collective::broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= opts_.size)
    return make_error(errc::invalid_argument, who() + ": broadcast from rank "
                                                + std::to_string(root) + ": no such rank");
  if (broken_)
    return make_error(errc::transport_failed,
                      who() + ": broadcast refused: the group failed earlier; recreate it");
  if (opts_.size == 1 || bytes == 0)
    return caf::none;
  const auto deadline = clock::now() + opts_.timeout;
  auto* buf = static_cast<char*>(data);
  for (size_t off = 0; off < bytes; off += opts_.slot_bytes) {
    const size_t n = std::min(opts_.slot_bytes, bytes - off);
    const uint64_t op = ++op_;
    if (opts_.rank == root)
      std::memcpy(slot(op, root), buf + off, n);
    hdr_->bytes[op & 1][opts_.rank].store(n, std::memory_order_relaxed);
    publish(0, op); // every rank: the slots' reuse rule needs every rank's arrival
    if (auto err = wait_all(0, op, deadline))
      return fail(std::move(err));
    if (hdr_->bytes[op & 1][root].load(std::memory_order_relaxed) != n)
      return fail(make_error(errc::transport_failed,
                             who() + ": the root passed another length to the broadcast"));
    if (opts_.rank != root)
      std::memcpy(buf + off, slot(op, root), n);
  }
  return caf::none;
}

} // namespace cafex
