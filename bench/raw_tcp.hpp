// The raw loopback TCP baseline every benchmark prints beside its own numbers: a
// ping-pong (round-trip latency) and a one-way bulk transfer (bandwidth) between two
// processes over 127.0.0.1, with plain blocking sockets and TCP_NODELAY.
//
// The peer is a child process forked by tcp_peer::start(). Call it before the program
// starts any thread (before a CAF actor system, an executor or a Gloo context): the
// child then only runs blocking socket calls and never touches the parent's state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

namespace cafex::bench {

/// Latency samples in microseconds and their summary.
struct latency_stats {
  std::vector<double> samples_us;
  double p50 = 0;
  double p99 = 0;
  double mean = 0;
  double min = 0;
};

/// Fills p50, p99, mean and min from samples_us.
latency_stats summarize(std::vector<double> samples_us);

/// A forked child process on 127.0.0.1 that echoes ping-pong messages and acknowledges
/// bulk transfers. One connection at a time; stopped (SIGKILL + waitpid) on destruction.
class tcp_peer {
public:
  /// Forks the peer; throws std::runtime_error when a socket call or fork fails.
  static tcp_peer start();

  tcp_peer(tcp_peer&& other) noexcept;
  tcp_peer& operator=(tcp_peer&&) = delete;
  tcp_peer(const tcp_peer&) = delete;
  ~tcp_peer();

  uint16_t port() const { return port_; }

  /// `warmup` untimed then `iterations` timed round trips of `message_bytes` each way.
  latency_stats ping_pong(int warmup, int iterations, size_t message_bytes = 64) const;

  /// Sends `bytes` to the peer `reps` times (after one untimed transfer); each transfer
  /// is timed from the first byte sent to the peer's one-byte acknowledgement of the
  /// last. Returns GB/s (1e9 bytes per second) of each timed transfer.
  std::vector<double> bandwidth(size_t bytes, int reps) const;

private:
  tcp_peer(pid_t pid, uint16_t port) : pid_(pid), port_(port) {}
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

/// The median of xs (0 for none).
double median(std::vector<double> xs);

/// "Intel(R) Xeon(R) ... (2 cores)", from /proc/cpuinfo and the affinity mask.
std::string machine_summary();

/// The 1-minute load average from /proc/loadavg (-1 if unreadable).
double load_average_1m();

} // namespace cafex::bench
