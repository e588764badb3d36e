#include "http_server.hpp"

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
    if (ec || !acceptor_ || state_->draining)
      return; // closed for shutdown (or a transient error on a closed acceptor)
    socket.set_option(tcp::no_delay(true), ec);
    std::make_shared<http_session>(std::move(socket), state_)->start();
    accept();
  });
}

void http_server::drain() {
  state_->draining = true;
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
