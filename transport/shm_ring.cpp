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

} // namespace

// -- doorbell -----------------------------------------------------------------

caf::expected<std::unique_ptr<shm_doorbell>> shm_doorbell::create(const std::string& name) {
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot create shared memory", name);
  if (ftruncate(fd, 4096) != 0) {
    ::close(fd);
    shm_unlink(name.c_str());
    return sys_error("cannot size shared memory", name);
  }
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(name.c_str());
    return sys_error("cannot map shared memory", name);
  }
  std::unique_ptr<shm_doorbell> b{new shm_doorbell};
  b->name_ = name;
  b->owner_ = true;
  b->word_ = new (p) std::atomic<uint32_t>(0);
  return b;
}

caf::expected<std::unique_ptr<shm_doorbell>> shm_doorbell::open(const std::string& name) {
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot open shared memory", name);
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED)
    return sys_error("cannot map shared memory", name);
  std::unique_ptr<shm_doorbell> b{new shm_doorbell};
  b->name_ = name;
  b->word_ = static_cast<std::atomic<uint32_t>*>(p);
  return b;
}

shm_doorbell::~shm_doorbell() {
  if (word_)
    munmap(word_, 4096);
  unlink();
}

void shm_doorbell::unlink() {
  if (owner_)
    shm_unlink(name_.c_str());
  owner_ = false;
}

uint32_t shm_doorbell::value() const {
  return word_->load(std::memory_order_acquire);
}

void shm_doorbell::ring() {
  word_->fetch_add(1, std::memory_order_acq_rel);
  futex_wake(word_);
}

void shm_doorbell::wait(uint32_t seen, std::chrono::microseconds timeout) const {
  if (word_->load(std::memory_order_acquire) == seen)
    futex_wait(word_, seen, timeout);
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
};

constexpr uint32_t ring_magic = 0xcafe0001;
constexpr size_t header_size = 64;

caf::expected<std::unique_ptr<shm_ring>> shm_ring::create(const std::string& name,
                                                          size_t capacity) {
  capacity = align8(capacity);
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot create shared memory", name);
  size_t size = header_size + capacity;
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
  std::unique_ptr<shm_ring> r{new shm_ring};
  r->name_ = name;
  r->owner_ = true;
  r->map_size_ = size;
  r->hdr_ = new (p) header{};
  r->hdr_->capacity = capacity;
  r->hdr_->magic = ring_magic;
  r->data_ = static_cast<char*>(p) + header_size;
  return r;
}

caf::expected<std::unique_ptr<shm_ring>> shm_ring::open(const std::string& name) {
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd < 0)
    return sys_error("cannot open shared memory", name);
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) <= header_size) {
    ::close(fd);
    return make_error(errc::transport_failed, "shared memory '" + name + "' is not a ring");
  }
  auto size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED)
    return sys_error("cannot map shared memory", name);
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

caf::error shm_ring::write(const std::vector<std::pair<const void*, size_t>>& parts,
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
    futex_wait(&hdr_->space_seq, seen, rest);
  }
  copy_in(head, &len, 8);
  auto pos = head + 8;
  for (auto& p : parts) {
    copy_in(pos, p.first, p.second);
    pos += p.second;
  }
  hdr_->head.store(head + need, std::memory_order_release);
  hdr_->data_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake(&hdr_->data_seq);
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
  hdr_->space_seq.fetch_add(1, std::memory_order_acq_rel);
  futex_wake(&hdr_->space_seq);
  return true;
}

caf::expected<std::vector<char>> shm_ring::read(std::chrono::milliseconds timeout) {
  auto deadline = clock::now() + timeout;
  std::vector<char> out;
  for (;;) {
    auto seen = hdr_->data_seq.load(std::memory_order_acquire);
    if (try_read(out))
      return out;
    if (hdr_->closed.load(std::memory_order_acquire))
      return make_error(errc::transport_failed, "ring '" + name_ + "' is closed");
    auto rest = left(deadline);
    if (rest.count() <= 0)
      return make_error(errc::timeout, "nothing arrived on ring '" + name_ + "' in time");
    futex_wait(&hdr_->data_seq, seen, rest);
  }
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
