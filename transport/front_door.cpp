#include "transport/front_door.hpp"

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/link_handshake.hpp"
#include "transport/link_stream.hpp"

namespace cafex {

struct front_door::impl {
  front_door_options opts;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::unique_ptr<asio::ssl::context> tls;
  std::thread thread;
  std::mutex mtx;
  std::set<uint16_t> targets;
  std::atomic<uint64_t> refused{0};

  void accept();
  bool allowed(uint16_t t) {
    if (t == 0)
      return true;
    std::lock_guard<std::mutex> g{mtx};
    return targets.count(t) > 0;
  }
};

namespace {

// One incoming connection through its handshake.
struct session : std::enable_shared_from_this<session> {
  front_door::impl& door;
  std::shared_ptr<link_stream> link;
  asio::steady_timer timer;
  asio::streambuf buf{handshake::max_line_length};
  std::string peer;
  std::string client_nonce;
  std::string server_nonce;
  uint16_t target = 0;
  bool done = false;

  session(front_door::impl& d, tcp::socket s)
    : door(d), link(std::make_shared<link_stream>(std::move(s))), timer(d.io) {
    peer = link->peer();
  }

  /// Ends the handshake as refused (once); false when it had already ended.
  bool end_refused(const std::string& why) {
    if (done)
      return false;
    done = true;
    timer.cancel();
    ++door.refused;
    spdlog::warn("refused peer {}: {}", peer, why);
    return true;
  }

  /// Refuses a peer whose link is broken or who does not speak the handshake: closes
  /// without an answer (there is nobody, or nothing, to answer).
  void drop(const std::string& why) {
    if (end_refused(why))
      link->close();
  }

  /// Refuses a peer that speaks the handshake and tells it why ("REFUSED <why>").
  void refuse(const std::string& why) {
    if (!end_refused(why))
      return;
    auto self = shared_from_this();
    auto msg = std::make_shared<std::string>("REFUSED " + why + "\n");
    link->async_write(asio::buffer(*msg),
                      [self, msg](boost::system::error_code, size_t) { self->link->close(); });
  }

  void start() {
    auto self = shared_from_this();
    timer.expires_after(door.opts.security.handshake_timeout);
    timer.async_wait([self](boost::system::error_code ec) {
      if (!ec && !self->done)
        self->drop("no valid handshake within the deadline");
    });
    if (door.tls) {
      link->use_tls(*door.tls);
      link->tls_stream().async_handshake(asio::ssl::stream_base::server,
                                         [self](boost::system::error_code ec) {
                                           if (ec)
                                             return self->drop("TLS handshake failed: "
                                                               + ec.message());
                                           self->read_hello();
                                         });
    } else {
      read_hello();
    }
  }

  void read_hello() {
    auto self = shared_from_this();
    link->async_read_line(buf, [self](boost::system::error_code ec, size_t n) {
      if (ec)
        return self->drop("no handshake line (" + ec.message()
                          + "); a driver without --token-file?");
      auto hello = handshake::parse_hello(take_line(self->buf, n));
      if (!hello)
        return self->drop("malformed handshake");
      self->client_nonce = std::move(hello->client_nonce);
      self->target = hello->target;
      self->server_nonce = make_nonce();
      auto line = std::make_shared<std::string>("CHALLENGE " + self->server_nonce + " "
                                                + server_mac(self->door.opts.security.token,
                                                             self->client_nonce,
                                                             self->server_nonce, self->target)
                                                + "\n");
      self->link->async_write(asio::buffer(*line),
                              [self, line](boost::system::error_code ec2, size_t) {
                                if (ec2)
                                  return self->drop("write failed: " + ec2.message());
                                self->read_auth();
                              });
    });
  }

  void read_auth() {
    auto self = shared_from_this();
    link->async_read_line(buf, [self](boost::system::error_code ec, size_t n) {
      if (ec)
        return self->drop("connection closed during the handshake");
      auto mac = handshake::parse_auth(take_line(self->buf, n));
      const auto& token = self->door.opts.security.token;
      auto want = client_mac(token, self->client_nonce, self->server_nonce, self->target);
      if (!mac || !equal_secret(*mac, want))
        return self->refuse("wrong or missing cluster token");
      if (!self->door.allowed(self->target))
        return self->refuse("unknown target port " + std::to_string(self->target));
      self->connect_local();
    });
  }

  void connect_local() {
    auto self = shared_from_this();
    uint16_t port = target == 0 ? door.opts.agent_port : target;
    auto local = std::make_shared<tcp::socket>(door.io);
    local->async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
      [self, local](boost::system::error_code ec) {
        if (ec)
          return self->refuse("target not reachable: " + ec.message());
        self->done = true;
        self->timer.cancel();
        auto ok = std::make_shared<std::string>("OK\n");
        self->link->async_write(asio::buffer(*ok), [self, ok,
                                                    local](boost::system::error_code ec2,
                                                           size_t) {
          if (ec2)
            return self->link->close();
          std::string pending(asio::buffers_begin(self->buf.data()),
                              asio::buffers_end(self->buf.data()));
          spdlog::debug("peer {} authenticated (target {})", self->peer, self->target);
          auto relay = std::make_shared<byte_relay>(self->link, std::make_shared<link_stream>(
                                                                  std::move(*local)));
          relay->start(std::move(pending));
        });
      });
  }
};

} // namespace

void front_door::impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open())
      return;
    if (!ec)
      std::make_shared<session>(*this, std::move(s))->start();
    accept();
  });
}

caf::expected<std::unique_ptr<front_door>> front_door::start(front_door_options opts) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  const auto& sec = p->opts.security;
  try {
    if (sec.tls()) {
      p->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      p->tls->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      p->tls->use_certificate_chain_file(sec.tls_cert);
      p->tls->use_private_key_file(sec.tls_key, asio::ssl::context::pem);
      p->tls->load_verify_file(sec.tls_ca);
      // Mutual TLS: the driver must present a certificate from the cluster CA.
      p->tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    tcp::endpoint ep(asio::ip::make_address(p->opts.listen_host), p->opts.listen_port);
    p->acceptor.open(ep.protocol());
    p->acceptor.set_option(tcp::acceptor::reuse_address(true));
    p->acceptor.bind(ep);
    p->acceptor.listen();
  } catch (const std::exception& e) {
    return make_error(errc::invalid_argument, "cannot listen on " + p->opts.listen_host + ":"
                                                + std::to_string(p->opts.listen_port) + ": "
                                                + e.what()
                                                + "; check the address, port and TLS files");
  }
  p->accept();
  auto* raw = p.get();
  p->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<front_door>(new front_door(std::move(p)));
}

front_door::front_door(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

front_door::~front_door() {
  stop();
}

uint16_t front_door::port() const {
  boost::system::error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

void front_door::allow_target(uint16_t port) {
  std::lock_guard<std::mutex> g{impl_->mtx};
  impl_->targets.insert(port);
}

uint64_t front_door::refused() const {
  return impl_->refused.load();
}

void front_door::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->io.stop();
  impl_->thread.join();
}

} // namespace cafex
