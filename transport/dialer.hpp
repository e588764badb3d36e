// The driver's side of secure links. CAF's remote_actor opens its own plain TCP
// connection, so the dialer offers a local port on 127.0.0.1 per remote target: each
// connection CAF makes to it is carried to the remote front door, through TLS and the
// token handshake (link_security.hpp), and relayed once the agent accepted it.
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
  /// Starts the dialer's io thread; `security` may be disabled (plain probes only).
  static caf::expected<std::unique_ptr<dialer>> start(link_security security);
  ~dialer();

  /// Connects to host:port within `timeout` and, when security is enabled, runs the whole
  /// handshake for `target` (0: the agent). The error says what failed and what to do.
  caf::error probe(const std::string& host, uint16_t port, uint16_t target,
                   std::chrono::milliseconds timeout);

  /// A port on 127.0.0.1 whose connections reach host:port's `target` through the
  /// handshake (security must be enabled).
  caf::expected<uint16_t> route(const std::string& host, uint16_t port, uint16_t target);

  void stop();

  struct impl;

private:
  explicit dialer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace cafex
