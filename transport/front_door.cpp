#include "transport/front_door.hpp"

#include <atomic>
#include <map>
#include <thread>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/link_handshake.hpp"
#include "transport/link_stream.hpp"

namespace cafex {

using door_clock = std::chrono::steady_clock;

struct front_door::impl {
  // Declared before the io context: sessions still queued in it touch these when it is
  // destroyed.
  front_door_options opts;
  std::atomic<uint64_t> refused{0};
  std::atomic<size_t> pending_total{0};
  std::map<std::string, size_t> pending_by_peer; // io thread only
  struct peer_log {
    door_clock::time_point last{};
    uint64_t suppressed = 0;
    std::string last_why;
  };
  std::map<std::string, peer_log> logs; // io thread only
  std::unique_ptr<asio::ssl::context> tls;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};
  asio::steady_timer log_flush{io};
  std::thread thread;

  void accept();
  void flush_logs();
  /// Counts a refusal of `addr` (the peer's IP) and logs it, or counts it for the next
  /// line about that address when one was logged less than an interval ago.
  void note_refusal(const std::string& addr, const std::string& peer, const std::string& why);
};

void front_door::impl::note_refusal(const std::string& addr, const std::string& peer,
                                    const std::string& why) {
  ++refused;
  auto now = door_clock::now();
  // One line per peer and kind of refusal per interval: an operator sees every distinct
  // reason, a flood of one kind costs one line (and a count).
  auto kind = why.substr(0, why.find_first_of("(:0123456789"));
  auto& l = logs[addr + " " + kind];
  if (l.last == door_clock::time_point{} || now - l.last >= opts.log_interval) {
    spdlog::warn("refused peer {}: {}", peer, why);
    l.last = now;
    l.suppressed = 0;
  } else {
    ++l.suppressed;
    l.last_why = why;
  }
}

void front_door::impl::flush_logs() {
  log_flush.expires_after(opts.log_interval);
  log_flush.async_wait([this](boost::system::error_code ec) {
    if (ec)
      return;
    auto now = door_clock::now();
    for (auto i = logs.begin(); i != logs.end();) {
      auto& l = i->second;
      if (l.suppressed > 0) {
        spdlog::warn(
          "refused {} more connection(s) from {} in the last {} s (last: {})", l.suppressed,
          i->first.substr(0, i->first.find(' ')),
          std::chrono::duration_cast<std::chrono::seconds>(opts.log_interval).count(),
          l.last_why);
        l.suppressed = 0;
        l.last = now;
      }
      // Quiet peers are forgotten: the table stays as small as the set of live offenders.
      if (now - l.last >= 2 * opts.log_interval)
        i = logs.erase(i);
      else
        ++i;
    }
    flush_logs();
  });
}

namespace {

std::string address_of(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("unknown") : ep.address().to_string();
}

// One incoming connection through its handshake.
struct session : std::enable_shared_from_this<session> {
  front_door::impl& door;
  std::shared_ptr<link_stream> link;
  asio::steady_timer timer;
  asio::streambuf buf{handshake::max_line_length};
  std::string addr;
  std::string peer;
  std::string client_nonce;
  std::string server_nonce;
  uint16_t target = 0;
  bool done = false;
  bool holds_slot = true;

  session(front_door::impl& d, tcp::socket s, std::string address)
    : door(d),
      link(std::make_shared<link_stream>(std::move(s))),
      timer(d.io),
      addr(std::move(address)) {
    peer = link->peer();
    ++door.pending_by_peer[addr];
    ++door.pending_total;
  }

  ~session() { release_slot(); }

  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// The connection no longer counts as one in its handshake.
  void release_slot() {
    if (!holds_slot)
      return;
    holds_slot = false;
    --door.pending_total;
    auto i = door.pending_by_peer.find(addr);
    if (i != door.pending_by_peer.end() && --i->second == 0)
      door.pending_by_peer.erase(i);
  }

  /// Ends the handshake as refused (once); false when it had already ended.
  bool end_refused(const std::string& why) {
    if (done)
      return false;
    done = true;
    timer.cancel();
    release_slot();
    door.note_refusal(addr, peer, why);
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
        self->drop("no valid handshake within "
                   + std::to_string(self->door.opts.security.handshake_timeout.count())
                   + " ms");
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
                          + "); a driver without the cluster token, or not a cafex driver?");
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
      // A driver sends nothing more until it read OK: bytes here are not a driver's.
      if (self->buf.size() != 0)
        return self->refuse("bytes sent before the handshake ended");
      if (self->target != 0 && !self->door.opts.has_target(self->target))
        return self->refuse("no worker route " + std::to_string(self->target)
                            + " on this node (the worker is gone?)");
      self->accepted();
    });
  }

  void accepted() {
    done = true;
    timer.cancel();
    release_slot();
    auto self = shared_from_this();
    auto ok = std::make_shared<std::string>("OK\n");
    link->async_write(asio::buffer(*ok), [self, ok](boost::system::error_code ec, size_t) {
      if (ec)
        return self->link->close();
      auto fd = hand_over(self->door.io, self->link, "");
      if (!fd) {
        spdlog::error("peer {}: {}", self->peer, describe(fd.error()));
        return self->link->close();
      }
      spdlog::debug("peer {} authenticated (target {})", self->peer, self->target);
      self->door.opts.deliver(*fd, self->target);
    });
  }
};

} // namespace

void front_door::impl::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open())
      return;
    if (ec) {
      // Out of descriptors (EMFILE) and the like: accepting again at once would spin on
      // the same error. Wait a little; the handshake deadline frees slots meanwhile.
      note_refusal("accept", "(none)", "cannot accept a connection: " + ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](boost::system::error_code ec2) {
        if (!ec2)
          accept();
      });
      return;
    }
    auto addr = address_of(s);
    auto from_peer = pending_by_peer.count(addr) ? pending_by_peer[addr] : size_t{0};
    if (pending_total >= opts.max_pending || from_peer >= opts.max_pending_per_peer) {
      auto why = "too many connections in their handshake (" + std::to_string(from_peer)
                 + " from this address, " + std::to_string(pending_total.load())
                 + " in all); try again later";
      note_refusal(addr, addr, why);
      boost::system::error_code ignored;
      if (!tls) { // a plain driver reads this as its first line; never blocks (short)
        s.non_blocking(true, ignored);
        s.write_some(asio::buffer("REFUSED " + why + "\n"), ignored);
      }
      s.close(ignored);
    } else {
      std::make_shared<session>(*this, std::move(s), addr)->start();
    }
    accept();
  });
}

caf::expected<std::unique_ptr<front_door>> front_door::start(front_door_options opts) {
  auto p = std::make_unique<impl>();
  p->opts = std::move(opts);
  if (!p->opts.deliver)
    return make_error(errc::invalid_argument, "front door without a deliver callback");
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
  p->flush_logs();
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

uint64_t front_door::refused() const {
  return impl_->refused.load();
}

size_t front_door::pending() const {
  return impl_->pending_total.load();
}

void front_door::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->io.stop();
  impl_->thread.join();
}

} // namespace cafex
