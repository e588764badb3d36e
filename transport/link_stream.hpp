// One TCP connection, optionally inside TLS, and the byte relay between two of them.
// Used by the front door (node agent side) and the dialer (driver side); every handler
// runs on the owner's single io thread.
#pragma once

#include <array>
#include <memory>
#include <string>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

namespace cafex {

namespace asio = boost::asio;
using asio::ip::tcp;

class link_stream {
public:
  explicit link_stream(tcp::socket sock) : sock_(std::move(sock)) {
    boost::system::error_code ec;
    sock_.set_option(tcp::no_delay(true), ec); // control messages: latency first
  }

  /// Wraps the socket in TLS; call before any I/O.
  void use_tls(asio::ssl::context& ctx) {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(sock_, ctx);
  }
  bool tls() const { return tls_ != nullptr; }
  asio::ssl::stream<tcp::socket&>& tls_stream() { return *tls_; }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    if (tls_)
      tls_->async_read_some(b, std::forward<Handler>(h));
    else
      sock_.async_read_some(b, std::forward<Handler>(h));
  }

  template <class Buffers, class Handler>
  void async_write(const Buffers& b, Handler&& h) {
    if (tls_)
      asio::async_write(*tls_, b, std::forward<Handler>(h));
    else
      asio::async_write(sock_, b, std::forward<Handler>(h));
  }

  template <class Handler>
  void async_read_line(asio::streambuf& buf, Handler&& h) {
    if (tls_)
      asio::async_read_until(*tls_, buf, '\n', std::forward<Handler>(h));
    else
      asio::async_read_until(sock_, buf, '\n', std::forward<Handler>(h));
  }

  void close() {
    boost::system::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

  std::string peer() const {
    boost::system::error_code ec;
    auto ep = sock_.remote_endpoint(ec);
    return ec ? std::string("unknown peer")
              : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

private:
  tcp::socket sock_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
};

/// Takes one complete line (without '\n' or '\r') out of `buf`.
inline std::string take_line(asio::streambuf& buf, size_t n) {
  std::string line(asio::buffers_begin(buf.data()),
                   asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
  buf.consume(n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.pop_back();
  return line;
}

/// Copies bytes both ways between a (possibly TLS) link and a plain local socket until
/// either side closes; then closes both. `pending` holds bytes already read from the
/// link (after the handshake line) that go to the local side first.
class byte_relay : public std::enable_shared_from_this<byte_relay> {
public:
  byte_relay(std::shared_ptr<link_stream> link, std::shared_ptr<link_stream> local)
    : link_(std::move(link)), local_(std::move(local)) {}

  void start(std::string pending = "") {
    auto self = shared_from_this();
    if (!pending.empty()) {
      auto data = std::make_shared<std::string>(std::move(pending));
      local_->async_write(asio::buffer(*data),
                          [self, data](boost::system::error_code ec, size_t) {
                            if (ec)
                              return self->stop();
                            self->pump(self->link_, self->local_, self->up_);
                          });
    } else {
      pump(link_, local_, up_);
    }
    pump(local_, link_, down_);
  }

private:
  using buffer = std::array<char, 65536>;

  void pump(const std::shared_ptr<link_stream>& from, const std::shared_ptr<link_stream>& to,
            buffer& buf) {
    auto self = shared_from_this();
    from->async_read_some(asio::buffer(buf), [self, from, to,
                                              &buf](boost::system::error_code ec, size_t n) {
      if (ec)
        return self->stop();
      to->async_write(asio::buffer(buf.data(), n),
                      [self, from, to, &buf](boost::system::error_code ec2, size_t) {
                        if (ec2)
                          return self->stop();
                        self->pump(from, to, buf);
                      });
    });
  }

  void stop() {
    link_->close();
    local_->close();
  }

  std::shared_ptr<link_stream> link_;
  std::shared_ptr<link_stream> local_;
  buffer up_{};
  buffer down_{};
};

} // namespace cafex
