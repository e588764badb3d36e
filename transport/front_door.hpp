// The node agent's only port. Each connection must pass TLS (when configured) and the
// token handshake of link_security.hpp before a single byte reaches CAF: only then is it
// handed to `deliver` as a connected socket (the agent serves itself on it, or passes it to
// the worker whose route the driver named; see caf_link.hpp). No BASP listener exists
// behind it. Unauthenticated connections have a handshake deadline and count against a
// per-peer and a total limit; refusals are logged once per peer per interval, with a
// count. A refused or slow peer never blocks another.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "transport/link_security.hpp"

namespace cafex {

struct front_door_options {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
  link_security security;
  /// Whether a driver may name `target` (a worker route, never 0) in its handshake.
  std::function<bool(uint16_t)> has_target = [](uint16_t) { return false; };
  /// Takes each authenticated connection: a connected socket the callee owns from then
  /// on, for `target` (0: the agent). Runs on the front door's thread.
  std::function<void(int fd, uint16_t target)> deliver;
  /// Connections still in their handshake, at most, from one address and in all.
  size_t max_pending_per_peer = 32;
  size_t max_pending = 256;
  /// A peer's refusals are logged once per interval (with how many there were).
  std::chrono::milliseconds log_interval{10000};
};

class front_door {
public:
  /// Binds and starts serving on its own thread.
  static caf::expected<std::unique_ptr<front_door>> start(front_door_options opts);
  ~front_door();

  uint16_t port() const;

  /// Connections refused so far, and those still in their handshake (tests).
  uint64_t refused() const;
  size_t pending() const;

  void stop();

  struct impl;

private:
  explicit front_door(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
