// The rendezvous server a driver runs at `distributed_init_method`, like c10d's TCPStore
// master: one Asio io thread, every handler asynchronous, so thousands of ranks blocked in
// get() cost a timer each and no thread. Wire format: rendezvous_protocol.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "transport/rendezvous_store.hpp"

namespace cafex {

struct rendezvous_server_options {
  /// Address to listen on; 127.0.0.1 keeps a single-node run off the network.
  std::string bind_address = "127.0.0.1";
  /// 0 picks an ephemeral port; read it back with port().
  uint16_t port = 0;
  /// Largest value accepted; a frame longer than this (plus a small overhead) closes
  /// its connection, so one bad peer cannot make the server allocate gigabytes.
  size_t max_value_size = size_t{64} << 20;
  /// Connections beyond this are closed on accept.
  size_t max_clients = 4096;
  /// How long stop() lets blocked clients receive their "stopping" reply before it
  /// abandons the io thread's remaining work.
  std::chrono::milliseconds stop_grace{2000};
};

/// Serves one in-memory key-value map. Thread-safe: start/stop/port from any thread.
class rendezvous_server {
public:
  explicit rendezvous_server(rendezvous_server_options opts = {});

  /// Stops the server (see stop()).
  ~rendezvous_server();

  rendezvous_server(const rendezvous_server&) = delete;
  rendezvous_server& operator=(const rendezvous_server&) = delete;

  /// Binds, listens and starts the io thread. Fails with errc::transport_failed naming
  /// the address when binding fails, errc::not_ready when called twice.
  caf::error start();

  /// The port actually bound (the ephemeral one when options.port was 0); 0 before
  /// start().
  uint16_t port() const;

  /// bind_address:port, for clients in this process and for error messages.
  store_address address() const;

  /// A new rendezvous generation starts (a recovery rebuilds the communicators): from
  /// now on every request of an earlier generation (1 to generation - 1; generation 0,
  /// a client that names none, is never fenced) is answered status superseded, and so,
  /// at once, is every client blocked in get/wait under one. A rank still meeting its
  /// peers in a rebuild that a second loss cut short lets go, instead of waiting for a
  /// peer that never comes until its deadline. Never lowers the fence; any thread.
  void fence(uint32_t generation);

  /// The generation of the last fence() (0 before any): requests of generations from 1
  /// to this minus one are superseded.
  uint32_t fence_generation() const;

  /// Refuses new connections, answers every client blocked in get/wait with
  /// status shutting_down, closes all connections and joins the io thread. Idempotent.
  void stop();

  /// Frames refused so far (oversized, malformed, unknown op): tests and metrics.
  size_t refused_frames() const;

  /// Connections currently open.
  size_t open_connections() const;

  /// Clients currently blocked in get/wait: lets tests wait for "blocked" as a
  /// condition instead of sleeping.
  size_t blocked_clients() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
