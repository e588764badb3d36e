#include "http_server.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "http_session.hpp"
#include "runtime/error.hpp"

namespace cafex::serve {

namespace net = boost::asio;
using tcp = net::ip::tcp;

http_server::http_server(net::io_context& ioc, std::shared_ptr<service_state> state)
  : ioc_(ioc), state_(std::move(state)) {}

caf::error http_server::listen(const std::string& address, uint16_t port) {
  boost::system::error_code ec;
  auto ip = net::ip::make_address(address, ec);
  if (ec)
    return make_error(errc::invalid_argument,
                      "--listen: '" + address + "' is not an IP address (e.g. 127.0.0.1)");
  tcp::endpoint ep{ip, port};
  auto acc = std::make_unique<tcp::acceptor>(ioc_);
  acc->open(ep.protocol(), ec);
  if (!ec)
    acc->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec)
    acc->bind(ep, ec);
  if (!ec)
    acc->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(errc::invalid_argument, "--listen: cannot listen on " + address + ":"
                                                + std::to_string(port) + ": " + ec.message());
  port_ = acc->local_endpoint().port();
  acceptor_ = std::move(acc);
  accept();
  return caf::none;
}

void http_server::accept() {
  acceptor_->async_accept(ioc_, [this](boost::system::error_code ec, tcp::socket socket) {
    if (!acceptor_ || state_->draining || ec == net::error::operation_aborted)
      return; // closed for shutdown
    if (ec) {
      accept_failed(ec);
      return;
    }
    if (accept_errors_ != 0) {
      spdlog::warn("cafex-serve: accepting connections again after {} failed accept(s)",
                   accept_errors_);
      accept_errors_ = 0;
      backoff_delay_ = std::chrono::milliseconds{0};
    }
    socket.set_option(tcp::no_delay(true), ec);
    std::make_shared<http_session>(std::move(socket), state_)->start();
    accept();
  });
}

void http_server::accept_failed(const boost::system::error_code& ec) {
  // Out of descriptors (EMFILE, ENFILE), buffers (ENOBUFS, ENOMEM), or a connection that
  // died in the backlog: none of it ends the service. The first failure of a run is
  // logged; the listener waits (10 ms, doubling to 1 s) and accepts again, and the
  // connections waiting in the backlog are served as soon as descriptors are free.
  if (accept_errors_++ == 0)
    spdlog::warn("cafex-serve: accept() failed: {} ({}); retrying with back-off{}",
                 ec.message(), ec.value(),
                 ec == net::error::no_descriptors ? " (out of file descriptors: raise "
                                                    "`ulimit -n` or lower the load)"
                                                  : "");
  backoff_delay_ = std::clamp(backoff_delay_ * 2, std::chrono::milliseconds{10},
                              std::chrono::milliseconds{1000});
  if (!backoff_)
    backoff_ = std::make_unique<net::steady_timer>(ioc_);
  backoff_->expires_after(backoff_delay_);
  backoff_->async_wait([this](boost::system::error_code ec) {
    if (!ec && acceptor_ && acceptor_->is_open() && !state_->draining)
      accept();
  });
}

void http_server::drain() {
  state_->draining = true;
  if (backoff_)
    backoff_->cancel();
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
  }
  // Copy: drain() may end sessions, which erase themselves.
  auto sessions = state_->sessions;
  for (auto& [raw, weak] : sessions)
    if (auto s = weak.lock())
      s->drain();
}

} // namespace cafex::serve
