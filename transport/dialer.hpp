// The driver's side of secure links: connects to a node agent's front door, runs TLS (when
// configured) and the token handshake (link_security.hpp), and returns the connected
// socket for CAF to take over (caf_link.hpp). No local port is opened: with TLS, the
// socket is one end of a socketpair whose other end the dialer's thread relays through
// TLS.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "transport/link_security.hpp"

namespace cafex {

class dialer {
public:
  /// Starts the dialer's io thread; `security` gives the TLS files (if any).
  static caf::expected<std::unique_ptr<dialer>> start(link_security security);
  ~dialer();

  /// Connects to host:port within `timeout` and runs the whole handshake for `target` (0:
  /// the agent; else a worker route it named), proving `token`. Returns the socket that
  /// carries the link from then on; the caller owns it. The error (errc::node_lost or
  /// errc::unauthorized) says what failed and what to do.
  caf::expected<int> connect(const std::string& host, uint16_t port, uint16_t target,
                             const std::string& token, std::chrono::milliseconds timeout);

  void stop();

  struct impl;

private:
  explicit dialer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
