#include "bench/raw_tcp.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/stats.hpp"

namespace cafex::bench {

namespace {

using clock_type = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("raw tcp: " + what + ": " + std::strerror(errno));
}

bool read_all(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    auto r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    auto r = ::write(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void no_delay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// One connection: a mode byte and a 64-bit size, then echo ('P') or acknowledge ('B').
void serve(int fd) {
  no_delay(fd);
  char mode = 0;
  uint64_t size = 0;
  if (!read_all(fd, &mode, 1) || !read_all(fd, &size, sizeof(size)))
    return;
  std::vector<char> buf(std::max<uint64_t>(size, 1));
  if (mode == 'P') {
    while (read_all(fd, buf.data(), size) && write_all(fd, buf.data(), size)) {
    }
  } else if (mode == 'B') {
    // Read in chunks so that a 64 MiB transfer needs no 64 MiB buffer.
    buf.resize(std::min<uint64_t>(size, 1 << 20));
    for (;;) {
      uint64_t left = size;
      while (left > 0) {
        auto r = ::read(fd, buf.data(), std::min<uint64_t>(left, buf.size()));
        if (r < 0 && errno == EINTR)
          continue;
        if (r <= 0)
          return;
        left -= static_cast<uint64_t>(r);
      }
      char ack = 'k';
      if (!write_all(fd, &ack, 1))
        return;
    }
  }
}

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    fail("connect");
  no_delay(fd);
  return fd;
}

void hello(int fd, char mode, uint64_t size) {
  if (!write_all(fd, &mode, 1) || !write_all(fd, &size, sizeof(size)))
    fail("handshake");
}

} // namespace

latency_stats summarize(std::vector<double> samples_us) {
  latency_stats s;
  s.samples_us = std::move(samples_us);
  if (s.samples_us.empty())
    return s;
  s.p50 = percentile(s.samples_us, 50);
  s.p99 = percentile(s.samples_us, 99);
  s.mean = std::accumulate(s.samples_us.begin(), s.samples_us.end(), 0.0)
           / static_cast<double>(s.samples_us.size());
  s.min = *std::min_element(s.samples_us.begin(), s.samples_us.end());
  return s;
}

double median(std::vector<double> xs) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

tcp_peer tcp_peer::start() {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0)
    fail("socket");
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    fail("bind");
  if (::listen(lfd, 8) != 0)
    fail("listen");
  socklen_t len = sizeof(addr);
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto port = ntohs(addr.sin_port);
  std::fflush(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0)
    fail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(0);
    for (;;) {
      int fd = ::accept(lfd, nullptr, nullptr);
      if (fd < 0) {
        if (errno == EINTR)
          continue;
        ::_exit(1);
      }
      serve(fd);
      ::close(fd);
    }
  }
  ::close(lfd);
  return tcp_peer{pid, port};
}

tcp_peer::tcp_peer(tcp_peer&& other) noexcept : pid_(other.pid_), port_(other.port_) {
  other.pid_ = -1;
}

tcp_peer::~tcp_peer() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

latency_stats tcp_peer::ping_pong(int warmup, int iterations, size_t message_bytes) const {
  int fd = connect_to(port_);
  hello(fd, 'P', message_bytes);
  std::vector<char> out(message_bytes, 'x'), in(message_bytes);
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < warmup + iterations; ++i) {
    auto t0 = clock_type::now();
    if (!write_all(fd, out.data(), out.size()) || !read_all(fd, in.data(), in.size()))
      fail("ping-pong");
    auto us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
    if (i >= warmup)
      samples.push_back(us);
  }
  ::close(fd);
  return summarize(std::move(samples));
}

std::vector<double> tcp_peer::bandwidth(size_t bytes, int reps) const {
  int fd = connect_to(port_);
  hello(fd, 'B', bytes);
  std::vector<char> buf(bytes, 'b');
  std::vector<double> gbps;
  for (int i = 0; i < reps + 1; ++i) {
    auto t0 = clock_type::now();
    char ack = 0;
    if (!write_all(fd, buf.data(), buf.size()) || !read_all(fd, &ack, 1))
      fail("bulk transfer");
    auto s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (i > 0)
      gbps.push_back(static_cast<double>(bytes) / s / 1e9);
  }
  ::close(fd);
  return gbps;
}

std::string machine_summary() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        model = line.substr(colon + 2);
      break;
    }
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = 0;
  if (::sched_getaffinity(0, sizeof(set), &set) == 0)
    cores = CPU_COUNT(&set);
  return model + " (" + std::to_string(cores) + " cores usable)";
}

double load_average_1m() {
  std::ifstream in("/proc/loadavg");
  double x = -1;
  in >> x;
  return in ? x : -1;
}

} // namespace cafex::bench
