#include "transport/dialer.hpp"

#include <functional>
#include <future>
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
  std::thread thread;
};

namespace {

/// (error kind, message) on failure; the socket on success.
using done_fn = std::function<void(errc kind, std::string error, int fd)>;

// Connects, runs TLS and the token handshake as the client, then calls `done` once.
struct client_hs : std::enable_shared_from_this<client_hs> {
  dialer::impl& d;
  std::string where;
  tcp::endpoint ep;
  uint16_t target;
  std::string token;
  done_fn done;
  std::shared_ptr<link_stream> link;
  asio::steady_timer timer;
  asio::streambuf buf{handshake::max_line_length};
  std::string reply;
  char byte = 0;
  std::string client_nonce = make_nonce();
  std::string server_nonce;
  bool server_proved = false;
  bool finished = false;

  client_hs(dialer::impl& di, const tcp::endpoint& e, uint16_t t, std::string tok,
            std::chrono::milliseconds timeout, done_fn f)
    : d(di), ep(e), target(t), token(std::move(tok)), done(std::move(f)), timer(di.io) {
    where = e.address().to_string() + ":" + std::to_string(e.port());
    timer.expires_after(timeout);
  }

  void fail(errc kind, const std::string& err) {
    if (finished)
      return;
    finished = true;
    timer.cancel();
    if (link)
      link->close();
    done(kind, err, -1);
  }

  void succeed() {
    if (finished)
      return;
    finished = true;
    timer.cancel();
    auto fd = hand_over(d.io, link, "");
    if (!fd) {
      link->close();
      return done(errc::transport_failed, describe(fd.error()), -1);
    }
    done(errc::transport_failed, "", *fd);
  }

  void start() {
    auto self = shared_from_this();
    timer.async_wait([self](boost::system::error_code ec) {
      if (!ec)
        self->fail(errc::node_lost, "no answer from " + self->where
                                      + " within the deadline; is `cafex node` "
                                        "running there and the address reachable from "
                                        "this host?");
    });
    auto sock = std::make_shared<tcp::socket>(d.io);
    sock->async_connect(ep, [self, sock](boost::system::error_code ec) {
      if (ec)
        return self->fail(errc::node_lost, "cannot connect to node agent at " + self->where
                                             + ": " + ec.message()
                                             + "; is `cafex node` running there?");
      self->link = std::make_shared<link_stream>(std::move(*sock));
      if (self->d.tls) {
        self->link->use_tls(*self->d.tls);
        self->link->tls_stream().async_handshake(
          asio::ssl::stream_base::client, [self](boost::system::error_code ec2) {
            if (ec2)
              return self->fail(errc::unauthorized,
                                "TLS handshake with " + self->where + " failed ("
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

  void write_then(std::string text, const std::function<void()>& next) {
    auto self = shared_from_this();
    auto msg = std::make_shared<std::string>(std::move(text));
    link->async_write(asio::buffer(*msg), [self, msg, next](boost::system::error_code ec,
                                                            size_t) {
      if (ec)
        return self->fail(errc::node_lost,
                          "lost " + self->where + " during the handshake: " + ec.message());
      next();
    });
  }

  void hello() {
    auto self = shared_from_this();
    write_then("CAFEX-LINK 1 " + std::to_string(target) + " " + client_nonce + "\n", [self] {
      self->link->async_read_line(self->buf, [self](boost::system::error_code ec, size_t n) {
        if (ec && self->d.tls)
          return self->fail(errc::unauthorized,
                            "node agent at " + self->where
                              + " refused this driver's TLS certificate (" + ec.message()
                              + "); it must be signed by the CA the agent trusts (its "
                                "--tls-ca)");
        if (ec)
          return self->fail(errc::node_lost,
                            "node agent at " + self->where
                              + " closed the connection during the handshake (" + ec.message()
                              + "); does it use TLS (--tls-*) while this driver does not?");
        auto line = take_line(self->buf, n);
        if (auto early = handshake::parse_reply(line); early && !early->ok)
          return self->fail(errc::unauthorized, "node agent at " + self->where
                                                  + " turned this driver away: " + early->why);
        auto challenge = handshake::parse_challenge(line);
        if (!challenge)
          return self->fail(errc::node_lost, "the peer at " + self->where
                                               + " does not speak the cafex handshake; is "
                                                 "it a cafex node agent of this version?");
        self->server_nonce = challenge->server_nonce;
        self->server_proved = equal_secret(challenge->server_mac,
                                           server_mac(self->token, self->client_nonce,
                                                      self->server_nonce, self->target));
        // Answer even when the agent's proof failed, so that it logs the refusal too.
        self->auth();
      });
    });
  }

  void auth() {
    auto self = shared_from_this();
    write_then("AUTH " + client_mac(token, client_nonce, server_nonce, target) + "\n",
               [self] { self->read_reply(); });
  }

  // The last line byte by byte: the agent hands the socket to CAF right after "OK", and
  // CAF's first bytes must stay in the socket for CAF on this side.
  void read_reply() {
    auto self = shared_from_this();
    link->async_read_some(asio::buffer(&byte, 1), [self](boost::system::error_code ec,
                                                         size_t n) {
      if (!ec && n == 1 && self->byte != '\n'
          && self->reply.size() < handshake::max_line_length) {
        self->reply += self->byte;
        return self->read_reply();
      }
      auto line = self->reply;
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      auto reply = handshake::parse_reply(line);
      if (reply && reply->ok && self->server_proved)
        return self->succeed();
      if (reply && !reply->ok)
        return self->fail(errc::unauthorized,
                          "node agent at " + self->where
                            + " refused this driver: " + reply->why
                            + (reply->why.find("token") != std::string::npos
                                 ? "; use the same --token-file as the agent"
                                 : ""));
      self->fail(errc::unauthorized,
                 "node agent at " + self->where
                   + " could not prove the cluster token; it is not the agent you meant, "
                     "or its --token-file differs from this driver's");
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

caf::expected<int> dialer::connect(const std::string& host, uint16_t port, uint16_t target,
                                   const std::string& token,
                                   std::chrono::milliseconds timeout) {
  auto ep = endpoint_of(host, port);
  if (!ep)
    return ep.error();
  struct outcome {
    errc kind;
    std::string error;
    int fd;
  };
  std::promise<outcome> result;
  auto fut = result.get_future();
  asio::post(impl_->io, [&, ep = *ep] {
    std::make_shared<client_hs>(*impl_, ep, target, token, timeout,
                                [&result](errc kind, std::string err, int fd) {
                                  result.set_value(outcome{kind, std::move(err), fd});
                                })
      ->start();
  });
  auto out = fut.get(); // the handshake's own timer bounds this wait
  if (out.fd < 0)
    return make_error(out.kind, out.error);
  return out.fd;
}

void dialer::stop() {
  if (!impl_->thread.joinable())
    return;
  impl_->work.reset();
  impl_->io.stop();
  impl_->thread.join();
}

} // namespace cafex
