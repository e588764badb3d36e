#include "transport/dialer.hpp"

#include <functional>
#include <future>
#include <list>
#include <thread>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/link_handshake.hpp"
#include "transport/link_stream.hpp"

namespace cafex {

struct dialer::impl {
  link_security sec;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::unique_ptr<asio::ssl::context> tls;
  std::list<tcp::acceptor> routes;
  std::thread thread;
};

namespace {

using done_fn =
  std::function<void(std::string error, std::shared_ptr<link_stream>, std::string pending)>;

// Connects, runs TLS and the token handshake as the client, then calls `done` once.
struct client_hs : std::enable_shared_from_this<client_hs> {
  dialer::impl& d;
  std::string where;
  tcp::endpoint ep;
  uint16_t target;
  done_fn done;
  std::shared_ptr<link_stream> link;
  asio::steady_timer timer;
  asio::streambuf buf{handshake::max_line_length};
  std::string client_nonce = make_nonce();
  std::string server_nonce;
  bool server_proved = false;
  bool finished = false;

  client_hs(dialer::impl& di, const tcp::endpoint& e, uint16_t t,
            std::chrono::milliseconds timeout, done_fn f)
    : d(di), ep(e), target(t), done(std::move(f)), timer(di.io) {
    where = e.address().to_string() + ":" + std::to_string(e.port());
    timer.expires_after(timeout);
  }

  void finish(const std::string& err) {
    if (finished)
      return;
    finished = true;
    timer.cancel();
    if (!err.empty() && link)
      link->close();
    done(err, err.empty() ? link : nullptr,
         err.empty()
           ? std::string(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()))
           : std::string());
  }

  void start() {
    auto self = shared_from_this();
    timer.async_wait([self](boost::system::error_code ec) {
      if (!ec)
        self->finish("no answer from " + self->where
                     + " within the deadline; is `cafex node` "
                       "running there and the address reachable from this host?");
    });
    auto sock = std::make_shared<tcp::socket>(d.io);
    sock->async_connect(ep, [self, sock](boost::system::error_code ec) {
      if (ec)
        return self->finish("cannot connect to node agent at " + self->where + ": "
                            + ec.message() + "; is `cafex node` running there?");
      self->link = std::make_shared<link_stream>(std::move(*sock));
      if (!self->d.sec.enabled())
        return self->expect_caf();
      if (self->d.tls) {
        self->link->use_tls(*self->d.tls);
        self->link->tls_stream().async_handshake(
          asio::ssl::stream_base::client, [self](boost::system::error_code ec2) {
            if (ec2)
              return self->finish("TLS handshake with " + self->where + " failed ("
                                  + ec2.message()
                                  + "); both sides need certificates "
                                    "signed by the same cluster CA (--tls-ca)");
            self->hello();
          });
      } else {
        self->hello();
      }
    });
  }

  // A plain CAF peer speaks first (BASP's server handshake); a front door waits for ours.
  void expect_caf() {
    auto self = shared_from_this();
    auto byte = std::make_shared<char>();
    auto quiet = std::make_shared<asio::steady_timer>(d.io, std::chrono::milliseconds(1500));
    quiet->async_wait([self](boost::system::error_code ec) {
      if (!ec)
        self->finish("node agent at " + self->where
                     + " sent nothing: it requires a cluster "
                       "token or TLS (cafex node --token-file/--tls-*); pass the same here");
    });
    link->async_read_some(asio::buffer(byte.get(), 1),
                          [self, byte, quiet](boost::system::error_code ec, size_t) {
                            quiet->cancel();
                            if (ec)
                              return self->finish("node agent at " + self->where
                                                  + " closed the connection: " + ec.message());
                            self->finish("");
                          });
  }

  void write_then(std::string text, const std::function<void()>& next) {
    auto self = shared_from_this();
    auto msg = std::make_shared<std::string>(std::move(text));
    link->async_write(asio::buffer(*msg), [self, msg, next](boost::system::error_code ec,
                                                            size_t) {
      if (ec)
        return self->finish("lost " + self->where + " during the handshake: " + ec.message());
      next();
    });
  }

  void hello() {
    auto self = shared_from_this();
    write_then("CAFEX-LINK 1 " + std::to_string(target) + " " + client_nonce + "\n", [self] {
      self->link->async_read_line(self->buf, [self](boost::system::error_code ec, size_t n) {
        if (ec && self->d.tls)
          return self->finish("node agent at " + self->where
                              + " refused this driver's TLS "
                                "certificate ("
                              + ec.message()
                              + "); it must be signed by the "
                                "CA the agent trusts (its --tls-ca)");
        if (ec)
          return self->finish("node agent at " + self->where
                              + " closed the connection "
                                "during the handshake ("
                              + ec.message()
                              + "); does it use "
                                "TLS (--tls-*) while this driver does not?");
        auto challenge = handshake::parse_challenge(take_line(self->buf, n));
        if (!challenge)
          return self->finish("node agent at " + self->where
                              + " does not speak the cafex "
                                "handshake; was it started without --token-file/--tls-*? "
                                "Then drop them here too, or restart it with them");
        self->server_nonce = challenge->server_nonce;
        self->server_proved = equal_secret(challenge->server_mac,
                                           server_mac(self->d.sec.token, self->client_nonce,
                                                      self->server_nonce, self->target));
        // Answer even when the agent's proof failed, so that it logs the refusal too.
        self->auth();
      });
    });
  }

  void auth() {
    auto self = shared_from_this();
    write_then("AUTH " + client_mac(d.sec.token, client_nonce, server_nonce, target) + "\n",
               [self] {
                 self->link->async_read_line(self->buf, [self](boost::system::error_code ec,
                                                               size_t n) {
                   std::string line = ec ? "" : take_line(self->buf, n);
                   auto reply = handshake::parse_reply(line);
                   if (reply && reply->ok && self->server_proved)
                     return self->finish("");
                   if (reply && !reply->ok)
                     return self->finish("node agent at " + self->where
                                         + " refused this "
                                           "driver: "
                                         + reply->why
                                         + "; use the same --token-file "
                                           "as the agent");
                   self->finish("node agent at " + self->where
                                + " could not prove the "
                                  "cluster token; it is not the agent you meant, or its "
                                  "--token-file differs from this driver's");
                 });
               });
  }
};

caf::expected<tcp::endpoint> endpoint_of(const std::string& host, uint16_t port) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec)
    return tcp::endpoint(addr, port);
  asio::io_context io;
  tcp::resolver r(io);
  auto res = r.resolve(host, std::to_string(port), ec);
  if (ec || res.empty())
    return make_error(errc::invalid_argument,
                      "cannot resolve node host '" + host + "': " + ec.message());
  return res.begin()->endpoint();
}

void accept_route(dialer::impl& d, tcp::acceptor& acc, const tcp::endpoint& remote,
                  uint16_t target) {
  acc.async_accept([&d, &acc, remote, target](boost::system::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !acc.is_open())
      return;
    if (!ec) {
      auto local = std::make_shared<link_stream>(std::move(s));
      std::make_shared<client_hs>(
        d, remote, target, d.sec.handshake_timeout,
        [local](std::string err, const std::shared_ptr<link_stream>& link,
                std::string pending) {
          if (!err.empty()) {
            spdlog::error("{}", err);
            return local->close();
          }
          // The local side is CAF; bytes read past the OK line belong to it.
          std::make_shared<byte_relay>(link, local)->start(std::move(pending));
        })
        ->start();
    }
    accept_route(d, acc, remote, target);
  });
}

} // namespace

caf::expected<std::unique_ptr<dialer>> dialer::start(link_security security) {
  auto p = std::make_unique<impl>();
  p->sec = std::move(security);
  if (p->sec.tls()) {
    try {
      p->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      p->tls->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
      p->tls->use_certificate_chain_file(p->sec.tls_cert);
      p->tls->use_private_key_file(p->sec.tls_key, asio::ssl::context::pem);
      p->tls->load_verify_file(p->sec.tls_ca);
      p->tls->set_verify_mode(asio::ssl::verify_peer);
    } catch (const std::exception& e) {
      return make_error(errc::invalid_argument, std::string("cannot load the TLS files: ")
                                                  + e.what()
                                                  + "; check --tls-cert/--tls-key/--tls-ca");
    }
  }
  auto* raw = p.get();
  p->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<dialer>(new dialer(std::move(p)));
}

dialer::dialer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

dialer::~dialer() {
  stop();
}

caf::error dialer::probe(const std::string& host, uint16_t port, uint16_t target,
                         std::chrono::milliseconds timeout) {
  auto ep = endpoint_of(host, port);
  if (!ep)
    return ep.error();
  std::promise<std::string> result;
  auto fut = result.get_future();
  asio::post(impl_->io, [&, ep = *ep] {
    std::make_shared<client_hs>(*impl_, ep, target, timeout,
                                [&result](std::string err,
                                          const std::shared_ptr<link_stream>& link,
                                          const std::string&) {
                                  if (link)
                                    link->close();
                                  result.set_value(std::move(err));
                                })
      ->start();
  });
  auto err = fut.get(); // the handshake's own timer bounds this wait
  if (!err.empty())
    return make_error(errc::node_lost, err);
  return caf::none;
}

caf::expected<uint16_t> dialer::route(const std::string& host, uint16_t port,
                                      uint16_t target) {
  auto ep = endpoint_of(host, port);
  if (!ep)
    return ep.error();
  std::promise<caf::expected<uint16_t>> result;
  auto fut = result.get_future();
  asio::post(impl_->io, [&, ep = *ep] {
    try {
      auto& acc = impl_->routes.emplace_back(impl_->io,
                                             tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                                           0));
      accept_route(*impl_, acc, ep, target);
      result.set_value(acc.local_endpoint().port());
    } catch (const std::exception& e) {
      result.set_value(make_error(errc::transport_failed,
                                  std::string("cannot open a local relay port: ") + e.what()));
    }
  });
  return fut.get();
}

void dialer::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->work.reset();
  impl_->io.stop();
  impl_->thread.join();
}

} // namespace cafex
