// The rendezvous key-value store that ranks use to find each other, like PyTorch c10d's
// Store: a small interface (`kv_store`), a namespacing view (`prefix_store`), and the
// parser of `distributed_init_method` ("tcp://HOST:PORT"). The TCP server and client live
// in rendezvous_server.hpp and rendezvous_client.hpp (one class each, to keep files short).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace cafex {

/// Where a rendezvous server listens.
struct store_address {
  std::string host = "127.0.0.1";
  uint16_t port = 0;

  /// "host:port" ("[::1]:port" for IPv6), for error messages.
  std::string to_string() const;
};

/// Parses "tcp://HOST:PORT" (HOST may be a name, IPv4, or [IPv6]). Port 0 is refused:
/// a client must know where the driver listens.
caf::expected<store_address> parse_store_url(const std::string& url);

/// A key-value store with deadlines. Every call takes its own timeout, so no caller can
/// block forever on a driver that died. Errors: errc::timeout when the deadline passed,
/// errc::transport_failed when the store could not be reached, errc::invalid_argument
/// for a refused request.
class kv_store {
public:
  using duration = std::chrono::milliseconds;

  virtual ~kv_store() = default;

  /// Stores `value` under `key`, replacing any earlier value and waking its waiters.
  virtual caf::error set(const std::string& key, const std::vector<char>& value,
                         duration timeout) = 0;

  /// The value of `key`, waiting until some rank sets it or `timeout` passes.
  virtual caf::expected<std::vector<char>> get(const std::string& key, duration timeout) = 0;

  /// Atomically adds `delta` to the integer under `key` (absent counts as 0) and
  /// returns the new value.
  virtual caf::expected<int64_t> add(const std::string& key, int64_t delta,
                                     duration timeout) = 0;

  /// True when every key exists now; never waits for them.
  virtual caf::expected<bool> check(const std::vector<std::string>& keys,
                                    duration timeout) = 0;

  /// Waits until every key exists or `timeout` passes.
  virtual caf::error wait(const std::vector<std::string>& keys, duration timeout) = 0;

  /// Deletes `key`; true when it existed.
  virtual caf::expected<bool> erase(const std::string& key, duration timeout) = 0;
};

/// A view of `inner` whose keys live under "prefix/", so groups (the TP group of each PP
/// stage, the PP pairs) share one server without colliding.
class prefix_store final : public kv_store {
public:
  /// `inner` must outlive this view.
  prefix_store(std::string prefix, kv_store& inner);

  caf::error set(const std::string& key, const std::vector<char>& value,
                 duration timeout) override;
  caf::expected<std::vector<char>> get(const std::string& key, duration timeout) override;
  caf::expected<int64_t> add(const std::string& key, int64_t delta, duration timeout) override;
  caf::expected<bool> check(const std::vector<std::string>& keys, duration timeout) override;
  caf::error wait(const std::vector<std::string>& keys, duration timeout) override;
  caf::expected<bool> erase(const std::string& key, duration timeout) override;

  /// "prefix/key".
  std::string full_key(const std::string& key) const;

private:
  std::vector<std::string> full_keys(const std::vector<std::string>& keys) const;

  std::string prefix_;
  kv_store& inner_;
};

} // namespace cafex
