#include "bench/raw_tcp.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <memory>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/error.hpp"

namespace cafex::bench {

namespace {

using clock_type = std::chrono::steady_clock;

// RAII for a file descriptor.
struct fd_guard {
  int fd = -1;
  explicit fd_guard(int x = -1) : fd(x) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

caf::error sys_error(const std::string& what) {
  return make_error(errc::transport_failed,
                    "raw tcp bench: " + what + " failed: " + std::strerror(errno));
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    auto k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool read_all(int fd, char* p, size_t n) {
  while (n > 0) {
    auto k = ::recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// What the parent asks the child to do next: `count` rounds of `size` bytes, echoed
// back whole ('P', ping-pong) or acknowledged with one byte ('B', bulk).
struct command {
  char op;
  uint64_t size;
  uint64_t count;
};

// The child's whole life: obey commands until the parent closes the connection.
void serve(int fd) {
  std::vector<char> buf;
  command cmd{};
  while (read_all(fd, reinterpret_cast<char*>(&cmd), sizeof(cmd))) {
    buf.resize(cmd.size);
    for (uint64_t i = 0; i < cmd.count; ++i) {
      if (!read_all(fd, buf.data(), buf.size()))
        return;
      bool ok = cmd.op == 'P' ? write_all(fd, buf.data(), buf.size()) : write_all(fd, "a", 1);
      if (!ok)
        return;
    }
  }
}

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

} // namespace

caf::expected<std::unique_ptr<raw_tcp_peer>> raw_tcp_peer::start() {
  fd_guard listener{::socket(AF_INET, SOCK_STREAM, 0)};
  if (listener.fd < 0)
    return sys_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::listen(listener.fd, 1) != 0
      || ::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return sys_error("bind/listen on 127.0.0.1");
  pid_t pid = ::fork();
  if (pid < 0)
    return sys_error("fork");
  if (pid == 0) {
    // Child: connect back, serve, and leave without running the parent's destructors.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      ::_exit(2);
    no_delay(fd);
    serve(fd);
    ::_exit(0);
  }
  // From here the peer object owns the child, so every exit path reaps it.
  std::unique_ptr<raw_tcp_peer> peer{new raw_tcp_peer(-1, pid)};
  pollfd pfd{listener.fd, POLLIN, 0};
  if (::poll(&pfd, 1, 10000) != 1)
    return make_error(errc::timeout, "raw tcp bench: the child did not connect within 10 s");
  peer->fd_ = ::accept(listener.fd, nullptr, nullptr);
  if (peer->fd_ < 0)
    return sys_error("accept");
  no_delay(peer->fd_);
  return peer;
}

raw_tcp_peer::~raw_tcp_peer() {
  if (fd_ >= 0)
    ::close(fd_); // the child reads EOF and exits
  else
    ::kill(pid_, SIGKILL); // it never connected
  int status = 0;
  ::waitpid(pid_, &status, 0);
}

caf::expected<size_t> raw_tcp_peer::set_send_buffer(size_t bytes) {
  int value = static_cast<int>(bytes);
  socklen_t len = sizeof(value);
  if (::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &value, len) != 0
      || ::getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &value, &len) != 0)
    return sys_error("SO_SNDBUF");
  return static_cast<size_t>(value);
}

caf::expected<std::vector<double>>
raw_tcp_peer::roundtrip_us(size_t iterations, size_t message_bytes, size_t warmup) {
  command cmd{'P', message_bytes, warmup + iterations};
  if (!write_all(fd_, reinterpret_cast<const char*>(&cmd), sizeof(cmd)))
    return sys_error("sending a command");
  std::vector<double> samples;
  samples.reserve(iterations);
  std::vector<char> buf(message_bytes, 'x');
  for (size_t i = 0; i < warmup + iterations; ++i) {
    auto t0 = clock_type::now();
    if (!write_all(fd_, buf.data(), buf.size()) || !read_all(fd_, buf.data(), buf.size()))
      return sys_error("ping-pong");
    if (i >= warmup)
      samples.push_back(seconds_since(t0) * 1e6);
  }
  return samples;
}

caf::expected<std::vector<double>>
raw_tcp_peer::bandwidth_gbps(size_t payload_bytes, size_t repetitions, size_t warmup) {
  command cmd{'B', payload_bytes, warmup + repetitions};
  if (!write_all(fd_, reinterpret_cast<const char*>(&cmd), sizeof(cmd)))
    return sys_error("sending a command");
  std::vector<double> samples;
  std::vector<char> buf(payload_bytes, 'x');
  char ack = 0;
  for (size_t i = 0; i < warmup + repetitions; ++i) {
    auto t0 = clock_type::now();
    if (!write_all(fd_, buf.data(), buf.size()) || !read_all(fd_, &ack, 1))
      return sys_error("bulk transfer");
    if (i >= warmup)
      samples.push_back(static_cast<double>(payload_bytes) / seconds_since(t0) / 1e9);
  }
  return samples;
}

caf::expected<std::vector<double>> raw_tcp_roundtrip_us(size_t iterations,
                                                        size_t message_bytes, size_t warmup) {
  auto peer = raw_tcp_peer::start();
  if (!peer)
    return peer.error();
  return (*peer)->roundtrip_us(iterations, message_bytes, warmup);
}

caf::expected<std::vector<double>> raw_tcp_bandwidth_gbps(size_t payload_bytes,
                                                          size_t repetitions, size_t warmup) {
  auto peer = raw_tcp_peer::start();
  if (!peer)
    return peer.error();
  return (*peer)->bandwidth_gbps(payload_bytes, repetitions, warmup);
}

sample_stats summarize(std::vector<double> samples) {
  sample_stats s;
  if (samples.empty())
    return s;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    auto idx = static_cast<size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
    return samples[std::min(idx, samples.size() - 1)];
  };
  s.min = samples.front();
  s.p50 = at(0.5);
  s.p99 = at(0.99);
  s.max = samples.back();
  return s;
}

} // namespace cafex::bench
