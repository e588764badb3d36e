#include "transport/tcp_collective.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"
#include "transport/link_security.hpp"

namespace cafex {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr uint32_t hello_magic = 0x43465854; // "CFXT"
constexpr size_t secret_chars = 64;          // make_nonce(): 32 random bytes as hex

struct hello {
  uint32_t magic = hello_magic;
  int32_t rank = 0;
  char secret[secret_chars] = {};
};

std::chrono::milliseconds ms_left(clock_type::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline
                                                                  - clock_type::now());
  return std::max(ms, std::chrono::milliseconds{0});
}

int poll_ms(clock_type::time_point deadline) {
  return static_cast<int>(std::min<int64_t>(ms_left(deadline).count() + 1, 1000));
}

void close_fd(int& fd) {
  if (fd >= 0) {
    ::shutdown(fd, SHUT_RDWR); // the peer sees the end even if a descriptor is shared
    ::close(fd);
    fd = -1;
  }
}

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// Reads or writes exactly `len` bytes on a nonblocking socket before `deadline`.
bool io_all(int fd, void* buf, size_t len, bool write, clock_type::time_point deadline) {
  auto* p = static_cast<char*>(buf);
  size_t done = 0;
  while (done < len) {
    ssize_t n = write ? ::send(fd, p + done, len - done, MSG_NOSIGNAL)
                      : ::recv(fd, p + done, len - done, 0);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR))
      return false;
    if (clock_type::now() >= deadline)
      return false;
    pollfd pfd{fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    ::poll(&pfd, 1, poll_ms(deadline));
  }
  return true;
}

caf::expected<std::pair<std::string, int>> parse_addr(const std::vector<char>& v) {
  std::string s(v.begin(), v.end());
  auto colon = s.rfind(':');
  if (colon == std::string::npos)
    return make_error(errc::transport_failed, "bad address '" + s + "' in the store");
  return std::make_pair(s.substr(0, colon), std::atoi(s.c_str() + colon + 1));
}

template <class T>
void add_into(T* acc, const T* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    acc[i] += x[i];
}

} // namespace

tcp_collective::tcp_collective(tcp_collective_options opts)
  : opts_(std::move(opts)), fds_(static_cast<size_t>(opts_.size), -1) {}

tcp_collective::~tcp_collective() {
  for (auto& fd : fds_)
    close_fd(fd);
}

std::string tcp_collective::who() const {
  return fmt::format("tcp group '{}' rank {}/{}", opts_.group, opts_.rank, opts_.size);
}

caf::error tcp_collective::usable(const char* what) const {
  if (broken_)
    return make_error(errc::transport_failed,
                      fmt::format("{}: {} on a broken group: an earlier call failed; "
                                  "rebuild the group (reinitialize_distributed)",
                                  who(), what));
  return caf::none;
}

caf::error tcp_collective::fail(caf::error err) {
  broken_ = true;
  for (auto& fd : fds_)
    close_fd(fd);
  return err;
}

template <class Progress>
caf::error
tcp_collective::run(std::vector<transfer>& xs, const std::string& what, Progress&& progress) {
  const auto deadline = clock_type::now() + opts_.timeout;
  std::vector<pollfd> pfds;
  pfds.reserve(xs.size());
  for (;;) {
    bool pending = false;
    for (auto& x : xs) {
      const int fd = fds_[static_cast<size_t>(x.peer)];
      while (x.sent < x.out_len) {
        ssize_t n = ::send(fd, x.out + x.sent, x.out_len - x.sent, MSG_NOSIGNAL);
        if (n > 0) {
          x.sent += static_cast<size_t>(n);
          continue;
        }
        if (errno == EAGAIN || errno == EINTR)
          break;
        return fail(make_error(errc::transport_failed,
                               fmt::format("{}: {}: sending to rank {} failed ({}): it exited "
                                           "or closed its group",
                                           who(), what, x.peer, errno_text(errno))));
      }
      while (x.got < x.in_len) {
        ssize_t n = ::recv(fd, x.in + x.got, x.in_len - x.got, 0);
        if (n > 0) {
          x.got += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
          break;
        return fail(make_error(
          errc::transport_failed,
          fmt::format("{}: {}: rank {} {} (it exited, or its group was closed by a teardown "
                      "or a recovery)",
                      who(), what, x.peer,
                      n == 0 ? "closed its connection"
                             : "'s connection failed: " + errno_text(errno))));
      }
      pending = pending || x.sent < x.out_len || x.got < x.in_len;
    }
    progress();
    if (!pending)
      return caf::none;
    if (clock_type::now() >= deadline) {
      std::string missing;
      for (auto& x : xs)
        if (x.sent < x.out_len || x.got < x.in_len)
          missing += (missing.empty() ? "" : ", ") + std::to_string(x.peer);
      return fail(make_error(errc::timeout,
                             fmt::format("{}: {} did not finish within {} ms; waiting for "
                                         "rank(s) {} (stuck, or not making the same call)",
                                         who(), what, opts_.timeout.count(), missing)));
    }
    pfds.clear();
    for (auto& x : xs) {
      short ev = 0;
      if (x.sent < x.out_len)
        ev |= POLLOUT;
      if (x.got < x.in_len)
        ev |= POLLIN;
      if (ev != 0)
        pfds.push_back({fds_[static_cast<size_t>(x.peer)], ev, 0});
    }
    ::poll(pfds.data(), pfds.size(), poll_ms(deadline));
  }
}

template <class T>
caf::error tcp_collective::sum(T* data, size_t count, const char* type) {
  const auto what = fmt::format("all_reduce_sum of {} {}", count, type);
  if (auto err = usable(what.c_str()))
    return err;
  if (opts_.size == 1 || count == 0)
    return caf::none;
  if (opts_.size == 2)
    return sum_pair(data, count, what);
  if (count * sizeof(T) > ring_threshold && count >= static_cast<size_t>(opts_.size))
    return sum_ring(data, count, what);
  return sum_direct(data, count, what);
}

// Two ranks: each sends its buffer and receives the other's; elements both sent and
// received are summed as they arrive (a + b == b + a bit for bit).
template <class T>
caf::error tcp_collective::sum_pair(T* data, size_t count, const std::string& what) {
  const size_t bytes = count * sizeof(T);
  scratch_.resize(bytes);
  auto* theirs = reinterpret_cast<T*>(scratch_.data());
  std::vector<transfer> xs(1);
  xs[0].peer = 1 - opts_.rank;
  xs[0].out = reinterpret_cast<const char*>(data);
  xs[0].out_len = bytes;
  xs[0].in = scratch_.data();
  xs[0].in_len = bytes;
  size_t summed = 0;
  return run(xs, what, [&] {
    const size_t ready = std::min(xs[0].sent, xs[0].got) / sizeof(T);
    if (ready > summed) {
      add_into(data + summed, theirs + summed, ready - summed);
      summed = ready;
    }
  });
}

// Small buffers over more ranks: every rank receives every buffer and adds them in rank
// order, so all ranks compute the same bits with one message latency.
template <class T>
caf::error tcp_collective::sum_direct(T* data, size_t count, const std::string& what) {
  const size_t bytes = count * sizeof(T);
  const auto n = static_cast<size_t>(opts_.size);
  scratch_.resize(bytes * (n + 1));
  auto part = [&](size_t r) { return scratch_.data() + bytes * r; };
  std::vector<transfer> xs;
  for (int p = 0; p < opts_.size; ++p) {
    if (p == opts_.rank)
      continue;
    transfer x;
    x.peer = p;
    x.out = reinterpret_cast<const char*>(data);
    x.out_len = bytes;
    x.in = part(static_cast<size_t>(p));
    x.in_len = bytes;
    xs.push_back(x);
  }
  if (auto err = run(xs, what, [] {}))
    return err;
  std::memcpy(part(static_cast<size_t>(opts_.rank)), data, bytes);
  auto* acc = reinterpret_cast<T*>(part(n));
  std::memcpy(acc, part(0), bytes);
  for (size_t r = 1; r < n; ++r)
    add_into(acc, reinterpret_cast<const T*>(part(r)), count);
  std::memcpy(data, acc, bytes);
  return caf::none;
}

// Large buffers over more ranks: ring reduce-scatter, then ring all-gather. Chunk c is
// reduced once, always along the same ranks in the same order, then copied everywhere.
template <class T>
caf::error tcp_collective::sum_ring(T* data, size_t count, const std::string& what) {
  const int n = opts_.size;
  const int me = opts_.rank;
  const int next = (me + 1) % n;
  const int prev = (me + n - 1) % n;
  auto begin = [&](int c) { return count * static_cast<size_t>(c) / static_cast<size_t>(n); };
  auto len = [&](int c) { return begin(c + 1) - begin(c); };
  auto mod = [n](int v) { return ((v % n) + n) % n; };
  scratch_.resize((count / static_cast<size_t>(n) + 1) * sizeof(T)); // the largest chunk
  auto* in = reinterpret_cast<T*>(scratch_.data());
  // Both directions of one step go through the same transfer list: next and prev are
  // different peers when n > 2.
  auto step = [&](int send_c, int recv_c, bool reduce) -> caf::error {
    std::vector<transfer> xs(2);
    xs[0].peer = next;
    xs[0].out = reinterpret_cast<const char*>(data + begin(send_c));
    xs[0].out_len = len(send_c) * sizeof(T);
    xs[1].peer = prev;
    xs[1].in = reduce ? scratch_.data() : reinterpret_cast<char*>(data + begin(recv_c));
    xs[1].in_len = len(recv_c) * sizeof(T);
    if (auto err = run(xs, what, [] {}))
      return err;
    if (reduce)
      add_into(data + begin(recv_c), in, len(recv_c));
    return caf::none;
  };
  for (int s = 0; s < n - 1; ++s)
    if (auto err = step(mod(me - s), mod(me - s - 1), true))
      return err;
  for (int s = 0; s < n - 1; ++s)
    if (auto err = step(mod(me + 1 - s), mod(me - s), false))
      return err;
  return caf::none;
}

caf::error tcp_collective::all_reduce_sum(int64_t* data, size_t count) {
  return sum(data, count, "int64");
}

caf::error tcp_collective::all_reduce_sum_f32(float* data, size_t count) {
  return sum(data, count, "float32");
}

caf::error tcp_collective::all_gather(const void* in, void* out, size_t bytes) {
  const auto what = fmt::format("all_gather of {} bytes per rank", bytes);
  if (auto err = usable(what.c_str()))
    return err;
  auto* base = static_cast<char*>(out);
  char* mine = base + bytes * static_cast<size_t>(opts_.rank);
  if (bytes == 0)
    return caf::none;
  if (in != mine)
    std::memmove(mine, in, bytes);
  std::vector<transfer> xs;
  for (int p = 0; p < opts_.size; ++p) {
    if (p == opts_.rank)
      continue;
    transfer x;
    x.peer = p;
    x.out = mine;
    x.out_len = bytes;
    x.in = base + bytes * static_cast<size_t>(p);
    x.in_len = bytes;
    xs.push_back(x);
  }
  return run(xs, what, [] {});
}

caf::error tcp_collective::broadcast(void* data, size_t bytes, int root) {
  const auto what = fmt::format("broadcast of {} bytes from rank {}", bytes, root);
  if (root < 0 || root >= opts_.size)
    return make_error(errc::invalid_argument, who() + ": " + what + ": no such rank");
  if (auto err = usable(what.c_str()))
    return err;
  if (opts_.size == 1 || bytes == 0)
    return caf::none;
  std::vector<transfer> xs;
  if (opts_.rank == root) {
    for (int p = 0; p < opts_.size; ++p)
      if (p != root) {
        transfer x;
        x.peer = p;
        x.out = static_cast<const char*>(data);
        x.out_len = bytes;
        xs.push_back(x);
      }
  } else {
    transfer x;
    x.peer = root;
    x.in = static_cast<char*>(data);
    x.in_len = bytes;
    xs.push_back(x);
  }
  return run(xs, what, [] {});
}

caf::error tcp_collective::point_to_point(const char* out, char* in, size_t bytes, int peer) {
  const auto what = out != nullptr ? fmt::format("send of {} bytes to rank {}", bytes, peer)
                                   : fmt::format("recv of {} bytes from rank {}", bytes, peer);
  if (peer < 0 || peer >= opts_.size || peer == opts_.rank)
    return make_error(errc::invalid_argument, who() + ": " + what + ": no such peer");
  if (auto err = usable(what.c_str()))
    return err;
  std::vector<transfer> xs(1);
  xs[0].peer = peer;
  xs[0].out = out;
  xs[0].out_len = out != nullptr ? bytes : 0;
  xs[0].in = in;
  xs[0].in_len = in != nullptr ? bytes : 0;
  return run(xs, what, [] {});
}

caf::error tcp_collective::send(const void* data, size_t bytes, int peer) {
  return point_to_point(static_cast<const char*>(data), nullptr, bytes, peer);
}

caf::error tcp_collective::recv(void* data, size_t bytes, int peer) {
  return point_to_point(nullptr, static_cast<char*>(data), bytes, peer);
}

caf::expected<std::unique_ptr<tcp_collective>>
make_tcp_collective(kv_store& store, const tcp_collective_options& opts) {
  if (opts.size < 1 || opts.rank < 0 || opts.rank >= opts.size || opts.group.empty())
    return make_error(errc::invalid_argument,
                      fmt::format("tcp group '{}': rank {} of {} is out of range (or the "
                                  "group has no name): ranks lie in [0, size)",
                                  opts.group, opts.rank, opts.size));
  std::unique_ptr<tcp_collective> self{new tcp_collective(opts)};
  if (opts.size == 1)
    return self;
  const auto deadline = clock_type::now() + opts.timeout;
  const auto who = self->who();
  auto sys_error = [&](const std::string& what) {
    return make_error(errc::transport_failed,
                      fmt::format("{}: {}: {}", who, what, errno_text(errno)));
  };
  // Listen first, then publish: a peer that reads the address can connect at once.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    return sys_error("socket");
  struct listener {
    int fd;
    ~listener() { close_fd(fd); }
  } guard{lfd};
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, opts.bind_host.c_str(), &sa.sin_addr) != 1)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: bind address '{}' is not an IPv4 address", who,
                                  opts.bind_host));
  socklen_t sl = sizeof sa;
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sl) != 0)
    return sys_error("bind to " + opts.bind_host);
  if (::listen(lfd, opts.size) != 0
      || ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &sl))
    return sys_error("listen");
  tune(lfd);
  const auto key = [&](const std::string& what) { return opts.group + "/tcp/" + what; };
  std::string secret;
  if (opts.rank == 0) {
    secret = make_nonce();
    if (auto err = store.set(key("secret"), {secret.begin(), secret.end()}, ms_left(deadline)))
      return err;
  } else {
    auto v = store.get(key("secret"), ms_left(deadline));
    if (!v)
      return make_error(code_of(v.error()),
                        fmt::format("{}: waiting for rank 0 to publish the group secret "
                                    "(did rank 0 start?): {}",
                                    who, describe(v.error())));
    secret.assign(v->begin(), v->end());
  }
  if (secret.size() != secret_chars)
    return make_error(errc::transport_failed,
                      fmt::format("{}: the group secret under '{}' has {} characters, not "
                                  "{}: another program uses this group name",
                                  who, key("secret"), secret.size(), secret_chars));
  auto addr = opts.bind_host + ":" + std::to_string(ntohs(sa.sin_port));
  if (auto err = store.set(key("addr/" + std::to_string(opts.rank)),
                           {addr.begin(), addr.end()}, ms_left(deadline)))
    return err;
  hello mine;
  mine.rank = opts.rank;
  std::memcpy(mine.secret, secret.data(), secret_chars);
  // Connect to every lower rank; each answers one byte once it checked the hello.
  for (int p = 0; p < opts.rank; ++p) {
    auto v = store.get(key("addr/" + std::to_string(p)), ms_left(deadline));
    if (!v)
      return make_error(code_of(v.error()),
                        fmt::format("{}: waiting for rank {}'s address: {}", who, p,
                                    describe(v.error())));
    auto peer = parse_addr(*v);
    if (!peer)
      return peer.error();
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return sys_error("socket");
    self->fds_[static_cast<size_t>(p)] = fd;
    sockaddr_in pa{};
    pa.sin_family = AF_INET;
    pa.sin_port = htons(static_cast<uint16_t>(peer->second));
    inet_pton(AF_INET, peer->first.c_str(), &pa.sin_addr);
    tune(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&pa), sizeof pa) != 0
        && errno != EINPROGRESS)
      return sys_error(
        fmt::format("connecting to rank {} at {}:{}", p, peer->first, peer->second));
    pollfd pfd{fd, POLLOUT, 0};
    while (::poll(&pfd, 1, poll_ms(deadline)) == 0 && clock_type::now() < deadline) {
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    char ack = 0;
    if (soerr != 0 || !io_all(fd, &mine, sizeof mine, true, deadline)
        || !io_all(fd, &ack, 1, false, deadline) || ack != 1)
      return make_error(ms_left(deadline).count() == 0 ? errc::timeout
                                                       : errc::transport_failed,
                        fmt::format("{}: rank {} at {}:{} did not accept this rank within {} "
                                    "ms{}: is it alive, and reachable from {}?",
                                    who, p, peer->first, peer->second, opts.timeout.count(),
                                    soerr ? " (" + errno_text(soerr) + ")" : "",
                                    opts.bind_host));
  }
  // Accept every higher rank; a connection that cannot prove the secret is dropped.
  int missing = opts.size - 1 - opts.rank;
  while (missing > 0) {
    if (clock_type::now() >= deadline) {
      std::string ranks;
      for (int p = opts.rank + 1; p < opts.size; ++p)
        if (self->fds_[static_cast<size_t>(p)] < 0)
          ranks += (ranks.empty() ? "" : ", ") + std::to_string(p);
      return make_error(errc::timeout,
                        fmt::format("{}: rank(s) {} did not connect within {} ms (did they "
                                    "start, and can they reach {}?)",
                                    who, ranks, opts.timeout.count(), addr));
    }
    pollfd pfd{lfd, POLLIN, 0};
    if (::poll(&pfd, 1, poll_ms(deadline)) <= 0)
      continue;
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    tune(fd);
    hello theirs;
    // A peer gets at most a second to say who it is: a silent connection cannot hold
    // the group's formation for the whole deadline.
    auto hello_deadline = std::min(deadline, clock_type::now() + std::chrono::seconds{1});
    const bool ok = io_all(fd, &theirs, sizeof theirs, false, hello_deadline)
                    && theirs.magic == hello_magic && theirs.rank > opts.rank
                    && theirs.rank < opts.size
                    && std::memcmp(theirs.secret, secret.data(), secret_chars) == 0
                    && self->fds_[static_cast<size_t>(theirs.rank)] < 0;
    char ack = 1;
    if (!ok || !io_all(fd, &ack, 1, true, hello_deadline)) {
      close_fd(fd);
      continue;
    }
    self->fds_[static_cast<size_t>(theirs.rank)] = fd;
    --missing;
  }
  return self;
}

} // namespace cafex
