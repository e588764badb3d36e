// One TCP connection, optionally inside TLS, and the relay between a TLS link and the
// socketpair end whose other end CAF reads (caf_link.hpp). Used by the front door (node
// agent side) and the dialer (driver side); every handler runs on the owner's io thread.
#pragma once

#include <array>
#include <memory>
#include <string>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <caf/expected.hpp>

#include "runtime/error.hpp"
#include "transport/caf_link.hpp"

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

  /// Gives up the plain socket (no TLS) and returns its descriptor, to hand to CAF.
  int release() {
    boost::system::error_code ec;
    return sock_.release(ec);
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

/// The local side of a relay: one end of an AF_UNIX socketpair.
class local_stream {
public:
  local_stream(asio::io_context& io, int fd) : sock_(io) {
    boost::system::error_code ec;
    sock_.assign(asio::local::stream_protocol(), fd, ec);
  }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& b, Handler&& h) {
    sock_.async_read_some(b, std::forward<Handler>(h));
  }

  template <class Buffers, class Handler>
  void async_write(const Buffers& b, Handler&& h) {
    asio::async_write(sock_, b, std::forward<Handler>(h));
  }

  void close() {
    boost::system::error_code ec;
    sock_.shutdown(asio::local::stream_protocol::socket::shutdown_both, ec);
    sock_.close(ec);
  }

private:
  asio::local::stream_protocol::socket sock_;
};

/// Copies bytes both ways between a TLS link and a local socketpair end until either side
/// closes; then closes both. `pending` holds bytes already read from the link that go to
/// the local side first.
class byte_relay : public std::enable_shared_from_this<byte_relay> {
public:
  byte_relay(std::shared_ptr<link_stream> link, std::shared_ptr<local_stream> local)
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

  template <class From, class To>
  void pump(const std::shared_ptr<From>& from, const std::shared_ptr<To>& to, buffer& buf) {
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
  std::shared_ptr<local_stream> local_;
  buffer up_{};
  buffer down_{};
};

/// The socket CAF takes over once a link passed the handshake: a plain link gives up its
/// own descriptor; a TLS link gets a socketpair whose other end this io context relays
/// through TLS (with `pending`, bytes already read from the link, first).
inline caf::expected<int> hand_over(asio::io_context& io,
                                    const std::shared_ptr<link_stream>& link,
                                    std::string pending) {
  if (!link->tls()) {
    int fd = link->release();
    if (fd < 0)
      return make_error(errc::transport_failed, "cannot take over the link's socket");
    return fd;
  }
  auto pair = make_socketpair();
  if (!pair)
    return pair.error();
  auto relay = std::make_shared<byte_relay>(link,
                                            std::make_shared<local_stream>(io, pair->first));
  relay->start(std::move(pending));
  return pair->second;
}

} // namespace cafex
