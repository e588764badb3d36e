// The cross-node CPU TP collective: a full mesh of TCP connections between the ranks of a
// group, driven by the calling thread itself (nonblocking sockets and poll). Gloo's TCP
// transport hands every receive to its device-loop thread, which then wakes the caller:
// two extra thread wake-ups per message, the source of its ~170 us floor for a 4 KB
// all-reduce where a TCP round trip takes 25 us, and of its multi-millisecond stalls when
// a busy neighbour delays those wake-ups (BENCHMARKS.md, "TP all-reduce across hosts").
// Here a rank's own poll() returns when its bytes arrive.
//
// Ranks meet through the driver's rendezvous store: each publishes the address it
// listens on, rank 0 a random group secret; a rank connects to every lower rank and
// proves the secret in its hello, so a stray or hostile connection to the port is
// dropped and never joins a group. Sums are deterministic: the same inputs give the same
// bits on every rank and every run (2 ranks, and small buffers: every rank adds the
// ranks' buffers in rank order; larger buffers over more ranks: a ring reduce-scatter and
// all-gather, each chunk reduced once in a fixed order and then copied to every rank).
// A peer that exits or closes its group ends a pending call at once (its socket closes);
// a stuck peer ends it at the group's deadline. After any failure the group is broken
// and closes its sockets, so its peers fail at once too.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/collective.hpp"
#include "transport/rendezvous_store.hpp"

namespace cafex {

struct tcp_collective_options {
  /// Key prefix of this group in the store ("pp0/tp/g3"); unique per group incarnation.
  std::string group = "tp";
  int rank = 0;
  int size = 1;
  /// The local address to listen on and to advertise to the peers (the node's IP).
  std::string bind_host = "127.0.0.1";
  /// Bounds the connection phase and every later call.
  std::chrono::milliseconds timeout{30000};
};

class tcp_collective final : public collective {
public:
  /// Closes every connection: peers inside a call with this rank fail at once.
  ~tcp_collective() override;

  tcp_collective(const tcp_collective&) = delete;
  tcp_collective& operator=(const tcp_collective&) = delete;

  int rank() const override { return opts_.rank; }
  int size() const override { return opts_.size; }
  caf::error all_reduce_sum(int64_t* data, size_t count) override;
  caf::error all_reduce_sum_f32(float* data, size_t count) override;
  caf::error all_gather(const void* in, void* out, size_t bytes) override;
  caf::error broadcast(void* data, size_t bytes, int root) override;
  const char* transport() const override { return "tcp"; }

  /// Point to point (a PP hand-off between two stages): sends `bytes` bytes to `peer`,
  /// which posts a recv of the same size; one call at a time per group, like the others.
  caf::error send(const void* data, size_t bytes, int peer);
  caf::error recv(void* data, size_t bytes, int peer);

  bool broken() const { return broken_; }

  /// Above this many bytes a group of more than 2 ranks sums by ring (bandwidth) instead
  /// of every rank receiving every buffer (latency).
  static constexpr size_t ring_threshold = size_t{256} << 10;

private:
  friend caf::expected<std::unique_ptr<tcp_collective>>
  make_tcp_collective(kv_store& store, const tcp_collective_options& opts);

  /// One peer's part of a call: bytes to send to it and bytes to receive from it.
  struct transfer {
    int peer = 0;
    const char* out = nullptr;
    size_t out_len = 0;
    size_t sent = 0;
    char* in = nullptr;
    size_t in_len = 0;
    size_t got = 0;
  };

  explicit tcp_collective(tcp_collective_options opts);

  std::string who() const;
  caf::error usable(const char* what) const;

  /// Moves every transfer's bytes before `deadline`; `progress` runs after every round
  /// of reads and writes (the 2-rank sum adds what is both sent and received). Breaks
  /// the group on failure.
  template <class Progress>
  caf::error run(std::vector<transfer>& xs, const std::string& what, Progress&& progress);

  template <class T>
  caf::error sum(T* data, size_t count, const char* type);
  template <class T>
  caf::error sum_pair(T* data, size_t count, const std::string& what);
  template <class T>
  caf::error sum_direct(T* data, size_t count, const std::string& what);
  template <class T>
  caf::error sum_ring(T* data, size_t count, const std::string& what);

  /// send (out set) or recv (in set) of `bytes` with `peer`.
  caf::error point_to_point(const char* out, char* in, size_t bytes, int peer);

  /// Marks the group broken and closes every connection (peers fail at once).
  caf::error fail(caf::error err);

  tcp_collective_options opts_;
  std::vector<int> fds_; ///< fds_[peer]: the connection to `peer`; -1 for this rank
  std::vector<char> scratch_;
  bool broken_ = false;
};

/// Joins rank `opts.rank` of the group through `store` (used only during the call).
/// errc::timeout (naming the ranks still missing) when the group does not form within
/// opts.timeout, errc::transport_failed for socket errors, errc::invalid_argument for
/// inconsistent options.
caf::expected<std::unique_ptr<tcp_collective>>
make_tcp_collective(kv_store& store, const tcp_collective_options& opts);

} // namespace cafex
