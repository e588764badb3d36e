// The node agent's public port. Each connection must pass TLS (when configured) and the
// token handshake of link_security.hpp before a single byte reaches CAF: only then is it
// relayed to the agent's CAF port (or a registered worker's port) on 127.0.0.1. Refusals
// are logged with the peer's address; a refused or slow peer never blocks another.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "transport/link_security.hpp"

namespace cafex {

struct front_door_options {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;
  uint16_t agent_port = 0; ///< CAF port of the agent on 127.0.0.1 (target 0)
  link_security security;
};

class front_door {
public:
  /// Binds and starts serving on its own thread.
  static caf::expected<std::unique_ptr<front_door>> start(front_door_options opts);
  ~front_door();

  uint16_t port() const;

  /// Lets authenticated peers reach 127.0.0.1:port (a worker's direct port).
  void allow_target(uint16_t port);

  /// Number of connections refused so far (tests).
  uint64_t refused() const;

  void stop();

  struct impl;

private:
  explicit front_door(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
