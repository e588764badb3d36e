#include "transport/shm_ring.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"
#include "transport/shm_futex.hpp"

namespace cafex {

namespace {

using clock = std::chrono::steady_clock;

caf::error sys_error(const std::string& what, const std::string& name) {
  return make_error(errc::transport_failed, what + " '" + name + "': " + errno_text(errno));
}

std::chrono::microseconds left(clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now());
}

constexpr size_t align8(size_t n) {
  return (n + 7) & ~size_t{7};
}

caf::expected<void*> create_segment(const std::string& name, size_t size) {
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot create shared memory", name);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    shm_unlink(name.c_str());
    return sys_error("cannot size shared memory (is /dev/shm large enough?)", name);
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(name.c_str());
    return sys_error("cannot map shared memory", name);
  }
  return p;
}

/// Maps a segment another process created: (address, size).
caf::expected<std::pair<void*, size_t>> open_segment(const std::string& name,
                                                     size_t min_size) {
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot open shared memory", name);
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < min_size) {
    ::close(fd);
    return make_error(errc::transport_failed,
                      "shared memory '" + name + "' is too small for what cafex keeps there");
  }
  auto size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED)
    return sys_error("cannot map shared memory", name);
  return std::make_pair(p, size);
}

} // namespace

// -- doorbell -----------------------------------------------------------------

struct shm_doorbell::words {
  std::atomic<uint32_t> value;
  std::atomic<uint32_t> waiters; ///< sleepers in wait()
};

constexpr size_t doorbell_size = 4096;

caf::expected<std::unique_ptr<shm_doorbell>> shm_doorbell::create(const std::string& name) {
  auto p = create_segment(name, doorbell_size);
  if (!p)
    return p.error();
  std::unique_ptr<shm_doorbell> b{new shm_doorbell};
  b->name_ = name;
  b->owner_ = true;
  b->words_ = new (*p) words{};
  return b;
}

caf::expected<std::unique_ptr<shm_doorbell>> shm_doorbell::open(const std::string& name) {
  auto seg = open_segment(name, doorbell_size);
  if (!seg)
    return seg.error();
  if (seg->second != doorbell_size) {
    munmap(seg->first, seg->second);
    return make_error(errc::transport_failed,
                      "shared memory '" + name + "' is not a cafex doorbell");
  }
  std::unique_ptr<shm_doorbell> b{new shm_doorbell};
  b->name_ = name;
  b->words_ = static_cast<words*>(seg->first);
  return b;
}

shm_doorbell::~shm_doorbell() {
  if (words_)
    munmap(words_, doorbell_size);
  unlink();
}

void shm_doorbell::unlink() {
  if (owner_)
    shm_unlink(name_.c_str());
  owner_ = false;
}

uint32_t shm_doorbell::value() const {
  return words_->value.load(std::memory_order_acquire);
}

void shm_doorbell::ring() {
  bump_and_wake(&words_->value, &words_->waiters);
}

void shm_doorbell::wait(uint32_t seen, std::chrono::microseconds timeout,
                        std::chrono::microseconds spin) const {
  auto moved = [this, seen] { return words_->value.load(std::memory_order_acquire) != seen; };
  if (!spin_until(moved, std::min(spin, timeout)))
    counted_wait(&words_->value, &words_->waiters, seen, timeout);
}

// -- board ----------------------------------------------------------------------

caf::expected<std::unique_ptr<shm_board>> shm_board::create(const std::string& name,
                                                            size_t slots) {
  auto p = create_segment(name, std::max<size_t>(1, slots) * sizeof(uint64_t));
  if (!p)
    return p.error();
  std::unique_ptr<shm_board> b{new shm_board};
  b->name_ = name;
  b->owner_ = true;
  b->size_ = std::max<size_t>(1, slots) * sizeof(uint64_t);
  b->slots_ = static_cast<std::atomic<uint64_t>*>(*p);
  for (size_t i = 0; i < slots; ++i)
    new (b->slots_ + i) std::atomic<uint64_t>(0);
  return b;
}

caf::expected<std::unique_ptr<shm_board>> shm_board::open(const std::string& name) {
  auto seg = open_segment(name, sizeof(uint64_t));
  if (!seg)
    return seg.error();
  std::unique_ptr<shm_board> b{new shm_board};
  b->name_ = name;
  b->size_ = seg->second;
  b->slots_ = static_cast<std::atomic<uint64_t>*>(seg->first);
  return b;
}

shm_board::~shm_board() {
  if (slots_)
    munmap(slots_, size_);
  unlink();
}

void shm_board::unlink() {
  if (owner_)
    shm_unlink(name_.c_str());
  owner_ = false;
}

void shm_board::set(size_t slot, uint64_t value) {
  if (slot < size_ / sizeof(uint64_t))
    slots_[slot].store(value, std::memory_order_release);
}

uint64_t shm_board::get(size_t slot) const {
  return slot < size_ / sizeof(uint64_t) ? slots_[slot].load(std::memory_order_acquire) : 0;
}

// -- ring ---------------------------------------------------------------------

struct shm_ring::header {
  std::atomic<uint64_t> head;      ///< bytes ever written
  std::atomic<uint64_t> tail;      ///< bytes ever read
  std::atomic<uint32_t> data_seq;  ///< futex: bumps after every write
  std::atomic<uint32_t> space_seq; ///< futex: bumps after every read
  std::atomic<uint32_t> closed;
  uint32_t magic;
  uint64_t capacity;
  std::atomic<uint32_t> data_waiters;  ///< readers asleep on data_seq
  std::atomic<uint32_t> space_waiters; ///< writers asleep on space_seq
};

constexpr uint32_t ring_magic = 0xcafe0002;
constexpr size_t header_size = 64;

caf::expected<std::unique_ptr<shm_ring>> shm_ring::create(const std::string& name,
                                                          size_t capacity) {
  capacity = align8(capacity);
  size_t size = header_size + capacity;
  auto p = create_segment(name, size);
  if (!p)
    return p.error();
  std::unique_ptr<shm_ring> r{new shm_ring};
  r->name_ = name;
  r->owner_ = true;
  r->map_size_ = size;
  r->hdr_ = new (*p) header{};
  r->hdr_->capacity = capacity;
  r->hdr_->magic = ring_magic;
  r->data_ = static_cast<char*>(*p) + header_size;
  return r;
}

caf::expected<std::unique_ptr<shm_ring>> shm_ring::open(const std::string& name) {
  auto seg = open_segment(name, header_size + 8);
  if (!seg)
    return seg.error();
  auto [p, size] = *seg;
  auto* hdr = static_cast<header*>(p);
  if (hdr->magic != ring_magic || hdr->capacity + header_size != size) {
    munmap(p, size);
    return make_error(errc::transport_failed,
                      "shared memory '" + name + "' is not a cafex ring");
  }
  std::unique_ptr<shm_ring> r{new shm_ring};
  r->name_ = name;
  r->map_size_ = size;
  r->hdr_ = hdr;
  r->data_ = static_cast<char*>(p) + header_size;
  return r;
}

shm_ring::~shm_ring() {
  if (hdr_)
    munmap(hdr_, map_size_);
  unlink();
}

void shm_ring::unlink() {
  if (owner_)
    shm_unlink(name_.c_str());
  owner_ = false;
}

size_t shm_ring::capacity() const {
  return hdr_->capacity;
}

void shm_ring::copy_in(uint64_t pos, const void* data, size_t n) {
  if (n == 0)
    return; // an empty part may come with a null pointer, which memcpy must not get
  auto cap = hdr_->capacity;
  auto off = pos % cap;
  auto first = std::min<size_t>(n, cap - off);
  std::memcpy(data_ + off, data, first);
  if (first < n)
    std::memcpy(data_, static_cast<const char*>(data) + first, n - first);
}

void shm_ring::copy_out(uint64_t pos, void* data, size_t n) const {
  if (n == 0)
    return; // an empty message reads into an empty vector's null data()
  auto cap = hdr_->capacity;
  auto off = pos % cap;
  auto first = std::min<size_t>(n, cap - off);
  std::memcpy(data, data_ + off, first);
  if (first < n)
    std::memcpy(static_cast<char*>(data) + first, data_, n - first);
}

caf::error shm_ring::write(std::initializer_list<std::pair<const void*, size_t>> parts,
                           std::chrono::milliseconds timeout, shm_doorbell* bell) {
  uint64_t len = 0;
  for (auto& p : parts)
    len += p.second;
  auto need = align8(8 + len);
  if (need > hdr_->capacity)
    return make_error(errc::transport_failed,
                      "a message of " + std::to_string(len) + " bytes does not fit ring '"
                        + name_ + "' of " + std::to_string(hdr_->capacity) + " bytes");
  auto deadline = clock::now() + timeout;
  auto head = hdr_->head.load(std::memory_order_relaxed);
  for (;;) {
    if (hdr_->closed.load(std::memory_order_acquire))
      return make_error(errc::transport_failed, "ring '" + name_ + "' is closed");
    auto seen = hdr_->space_seq.load(std::memory_order_acquire);
    auto tail = hdr_->tail.load(std::memory_order_acquire);
    if (hdr_->capacity - (head - tail) >= need)
      break;
    auto rest = left(deadline);
    if (rest.count() <= 0)
      return make_error(errc::timeout,
                        "ring '" + name_ + "' stayed full: its reader is stuck");
    counted_wait(&hdr_->space_seq, &hdr_->space_waiters, seen, rest);
  }
  copy_in(head, &len, 8);
  auto pos = head + 8;
  for (auto& p : parts) {
    copy_in(pos, p.first, p.second);
    pos += p.second;
  }
  hdr_->head.store(head + need, std::memory_order_release);
  bump_and_wake(&hdr_->data_seq, &hdr_->data_waiters);
  if (bell)
    bell->ring();
  return caf::none;
}

bool shm_ring::try_read(std::vector<char>& out) {
  auto tail = hdr_->tail.load(std::memory_order_relaxed);
  if (hdr_->head.load(std::memory_order_acquire) == tail)
    return false;
  uint64_t len = 0;
  copy_out(tail, &len, 8);
  out.resize(len);
  copy_out(tail + 8, out.data(), len);
  hdr_->tail.store(tail + align8(8 + len), std::memory_order_release);
  bump_and_wake(&hdr_->space_seq, &hdr_->space_waiters);
  return true;
}

caf::error shm_ring::read(std::vector<char>& out, std::chrono::milliseconds timeout,
                          std::chrono::microseconds spin) {
  auto deadline = clock::now() + timeout;
  auto readable = [this] {
    return hdr_->head.load(std::memory_order_acquire)
             != hdr_->tail.load(std::memory_order_relaxed)
           || hdr_->closed.load(std::memory_order_acquire) != 0;
  };
  spin_until(readable, spin);
  for (;;) {
    auto seen = hdr_->data_seq.load(std::memory_order_acquire);
    if (try_read(out))
      return caf::none;
    if (hdr_->closed.load(std::memory_order_acquire))
      return make_error(errc::transport_failed, "ring '" + name_ + "' is closed");
    auto rest = left(deadline);
    if (rest.count() <= 0)
      return make_error(errc::timeout, "nothing arrived on ring '" + name_ + "' in time");
    counted_wait(&hdr_->data_seq, &hdr_->data_waiters, seen, rest);
  }
}

caf::expected<std::vector<char>> shm_ring::read(std::chrono::milliseconds timeout) {
  std::vector<char> out;
  if (auto err = read(out, timeout))
    return err;
  return out;
}

void shm_ring::close() {
  hdr_->closed.store(1, std::memory_order_release);
  hdr_->data_seq.fetch_add(1, std::memory_order_acq_rel);
  hdr_->space_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake(&hdr_->data_seq);
  futex_wake(&hdr_->space_seq);
}

bool shm_ring::closed() const {
  return hdr_->closed.load(std::memory_order_acquire) != 0;
}

} // namespace cafex
