// The blocking client of rendezvous_server. Every call carries a deadline: it runs its
// socket operations on a private io_context until they finish or the deadline passes,
// so a rank never hangs on a driver that died or never came up.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "transport/rendezvous_store.hpp"

namespace cafex {

struct rendezvous_client_options {
  /// Largest value the client accepts in a reply; larger frames mean a broken server.
  size_t max_value_size = size_t{64} << 20;
  /// Extra time a waiting call (get, wait) allows beyond its timeout for the server's
  /// own timeout reply to arrive, so the connection stays in sync.
  std::chrono::milliseconds reply_grace{500};
  /// First and largest pause between connection attempts while the server is not up.
  std::chrono::milliseconds first_retry{20};
  std::chrono::milliseconds max_retry{500};
  /// The rendezvous generation every request names (a communicator generation): once the
  /// server is fenced past it (rendezvous_server::fence), every call fails at once with
  /// errc::transport_failed, a blocked get/wait included. 0: never fenced.
  uint32_t generation = 0;
};

/// One TCP connection to a rendezvous server. Calls from several threads serialise on
/// an internal mutex (one request on the wire at a time). After an I/O failure or a
/// client-side deadline the connection is dropped and the next call reconnects within
/// its own deadline; a request is never resent, because add() is not idempotent.
class rendezvous_client final : public kv_store {
public:
  /// Connects to `addr`, retrying while nothing listens there, until `timeout` passes.
  /// Fails with errc::timeout naming host:port and the last connection error.
  static caf::expected<std::unique_ptr<rendezvous_client>>
  connect(const store_address& addr, duration timeout, rendezvous_client_options opts = {});

  ~rendezvous_client() override;

  caf::error set(const std::string& key, const std::vector<char>& value,
                 duration timeout) override;
  caf::expected<std::vector<char>> get(const std::string& key, duration timeout) override;
  caf::expected<int64_t> add(const std::string& key, int64_t delta, duration timeout) override;
  caf::expected<bool> check(const std::vector<std::string>& keys, duration timeout) override;
  caf::error wait(const std::vector<std::string>& keys, duration timeout) override;
  caf::expected<bool> erase(const std::string& key, duration timeout) override;

  const store_address& address() const;

  struct impl;

private:
  explicit rendezvous_client(std::unique_ptr<impl> ptr);

  std::unique_ptr<impl> impl_;
};

} // namespace cafex
