// The floor any TCP transport is measured against: plain sockets between this process
// and a forked child on loopback. Benchmarks report Gloo (or CAF) beside these numbers,
// measured in the same run on the same machine.
#pragma once

#include <cstddef>
#include <vector>

#include <caf/expected.hpp>

#include <memory>
#include <sys/types.h>

namespace cafex::bench {

/// A forked child connected over loopback TCP (TCP_NODELAY) that serves ping-pongs and
/// bulk transfers on command. Keeping one child lets a benchmark interleave raw TCP
/// samples with the transport under test, so both see the same machine load. Create it
/// before the process starts threads (fork).
class raw_tcp_peer {
public:
  static caf::expected<std::unique_ptr<raw_tcp_peer>> start();

  /// Closes the connection and reaps the child.
  ~raw_tcp_peer();

  raw_tcp_peer(const raw_tcp_peer&) = delete;
  raw_tcp_peer& operator=(const raw_tcp_peer&) = delete;

  /// Round-trip samples in microseconds, after `warmup` discarded ones.
  caf::expected<std::vector<double>> roundtrip_us(size_t iterations, size_t message_bytes = 64,
                                                  size_t warmup = 100);

  /// Sets this side's SO_SNDBUF (which turns off the kernel's autotuning for the
  /// socket, as Gloo does when it sizes its send buffer to the message); returns the
  /// size the kernel granted (capped by net.core.wmem_max, then doubled).
  caf::expected<size_t> set_send_buffer(size_t bytes);

  /// Samples of "send payload_bytes, wait for the child's 1-byte ack" in GB/s.
  caf::expected<std::vector<double>> bandwidth_gbps(size_t payload_bytes, size_t repetitions,
                                                    size_t warmup = 1);

private:
  raw_tcp_peer(int fd, pid_t pid) : fd_(fd), pid_(pid) {}

  int fd_;
  pid_t pid_;
};

/// Round trips of `message_bytes` (TCP_NODELAY) between this process and a forked echo
/// child: one sample per iteration in microseconds, after `warmup` discarded ones.
caf::expected<std::vector<double>>
raw_tcp_roundtrip_us(size_t iterations, size_t message_bytes = 64, size_t warmup = 100);

/// One-way bandwidth to a forked child: each sample sends `payload_bytes` and waits for
/// the child's 1-byte ack after it read them all, in GB/s (1e9 bytes per second).
/// The ack makes it comparable to a send + recv-ack round on any other transport.
caf::expected<std::vector<double>>
raw_tcp_bandwidth_gbps(size_t payload_bytes, size_t repetitions, size_t warmup = 1);

/// Order statistics of samples (nearest rank).
struct sample_stats {
  double min = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

sample_stats summarize(std::vector<double> samples);

} // namespace cafex::bench
