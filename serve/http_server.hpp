// The HTTP front of cafex-serve (Boost.Beast, one io_context thread): the listener and
// the state its sessions share. Routes: POST /v1/completions, GET /v1/models[/ID],
// GET /health, GET /metrics, GET /openapi.json. Everything here runs on the io thread;
// nothing in it blocks on the executor (steps go through the batcher, health comes from
// the monitor's snapshot). The listener survives every accept() error (EMFILE, ENFILE,
// ENOBUFS, ...): it logs the first of a run, backs off and accepts again.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <caf/error.hpp>

#include "batcher.hpp"
#include "completion_request.hpp"
#include "health_monitor.hpp"
#include "service_metrics.hpp"

namespace cafex::serve {

class http_session;

/// What sessions share. Owned through shared_ptr so a session outlives nothing it uses.
struct service_state {
  batcher& batch;
  service_metrics& metrics;
  health_monitor& health;
  request_limits limits;
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  std::string api_key;   ///< non-empty: every route but /health needs "Bearer KEY"
  int64_t created = 0;   ///< when the service started (unix seconds): the model's
  std::string openapi;   ///< GET /openapi.json
  int retry_after_s = 1; ///< Retry-After of a 503 a retry can cure
  std::chrono::seconds idle_timeout{30}; ///< keep-alive idle and per-write deadline
  bool draining = false;
  std::unordered_map<http_session*, std::weak_ptr<http_session>> sessions;
  std::function<void()> on_session_end; ///< after a session closed (shutdown progress)

  service_state(batcher& b, service_metrics& m, health_monitor& h)
    : batch(b), metrics(m), health(h) {}
};

class http_server {
public:
  http_server(boost::asio::io_context& ioc, std::shared_ptr<service_state> state);

  /// Binds and starts accepting. errc::invalid_argument naming the address on failure.
  caf::error listen(const std::string& address, uint16_t port);

  /// The bound port (after listen).
  uint16_t port() const { return port_; }

  /// Stops accepting; idle keep-alive connections close now, busy ones after their
  /// response; later requests on them get 503.
  void drain();

  size_t sessions() const { return state_->sessions.size(); }

private:
  void accept();
  void accept_failed(const boost::system::error_code& ec);

  boost::asio::io_context& ioc_;
  std::unique_ptr<boost::asio::steady_timer> backoff_;
  std::chrono::milliseconds backoff_delay_{0};
  uint64_t accept_errors_ = 0; ///< in the current run of failures
  std::shared_ptr<service_state> state_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
};

} // namespace cafex::serve
