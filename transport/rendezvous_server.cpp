#include "transport/rendezvous_server.hpp"

#include <atomic>
#include <future>
#include <set>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "transport/rendezvous_protocol.hpp"

namespace cafex {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using rdzv::status;

namespace {

class session;
using session_ptr = std::shared_ptr<session>;

// Everything the io thread owns. Only the io thread touches it after start(), so it
// needs no lock; the atomics are read by other threads.
struct server_state {
  explicit server_state(rendezvous_server_options o) : opts(std::move(o)) {}

  rendezvous_server_options opts;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::string name; // "host:port" for logs and replies
  std::unordered_map<std::string, std::vector<char>> data;
  std::set<session_ptr> sessions;
  std::set<session_ptr> waiting; // sessions blocked in get/wait
  bool stopping = false;
  std::atomic<uint32_t> fence{0}; // requests of generations 1..fence-1 are superseded
  std::atomic<size_t> refused{0};
  std::atomic<size_t> open{0};
  std::atomic<size_t> blocked{0}; // mirrors waiting.size() for other threads

  bool has(const std::string& key) const { return data.count(key) != 0; }
  /// True when requests of `generation` are fenced off (0 never is).
  bool superseded(uint32_t generation) const {
    return generation != 0 && generation < fence.load();
  }
  std::string superseded_text(uint32_t generation) const {
    return "rendezvous generation " + std::to_string(generation)
           + " was superseded: generation " + std::to_string(fence.load())
           + " started (a recovery began again)";
  }
  void notify_waiters();
  void abandon_superseded();
  void accept();
  void shutdown();
};

// One client connection. Clients are blocking, so a session holds at most one request:
// it reads a frame, answers it (maybe after waiting for keys), then reads the next.
class session : public std::enable_shared_from_this<session> {
public:
  session(server_state& st, tcp::socket sock)
    : st_(st), sock_(std::move(sock)), timer_(st.io) {
    boost::system::error_code ec;
    auto ep = sock_.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void start() { read_header(); }

  // Completes a blocked get/wait when its keys now exist; false when still missing.
  bool try_complete_wait() {
    auto w = reply_if_ready();
    if (!w)
      return false;
    finish_wait(*w);
    return true;
  }

  void finish_wait(const rdzv::writer& w) {
    waiting_ = false;
    ++wait_gen_;
    timer_.cancel();
    st_.waiting.erase(shared_from_this());
    st_.blocked = st_.waiting.size();
    // Stops the disconnect probe so the write below is the only pending operation.
    boost::system::error_code ignored;
    sock_.cancel(ignored);
    respond(w);
  }

  bool waiting() const { return waiting_; }
  uint32_t generation() const { return generation_; }

  void close() {
    boost::system::error_code ignored;
    sock_.close(ignored);
    timer_.cancel();
    waiting_ = false;
    auto self = shared_from_this();
    st_.waiting.erase(self);
    st_.blocked = st_.waiting.size();
    if (st_.sessions.erase(self) != 0)
      --st_.open;
  }

private:
  void refuse(const std::string& why) {
    ++st_.refused;
    spdlog::warn("rendezvous server {}: closing connection from {}: {}", st_.name, peer_, why);
    close();
  }

  void read_header() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(header_),
                     [this, self](boost::system::error_code ec, size_t) {
                       if (ec)
                         return close(); // peer closed, possibly mid-frame
                       auto len = rdzv::decode_length(header_.data());
                       auto limit = st_.opts.max_value_size + rdzv::frame_overhead;
                       if (len > limit)
                         return refuse("frame of " + std::to_string(len)
                                       + " bytes exceeds the limit of "
                                       + std::to_string(limit));
                       body_.resize(len);
                       read_body();
                     });
  }

  void read_body() {
    auto self = shared_from_this();
    asio::async_read(sock_, asio::buffer(body_),
                     [this, self](boost::system::error_code ec, size_t) {
                       if (ec)
                         return close();
                       handle();
                     });
  }

  void respond(const rdzv::writer& w) {
    out_ = w.frame();
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_),
                      [this, self](boost::system::error_code ec, size_t) {
                        if (ec || st_.stopping)
                          return close();
                        read_header();
                      });
  }

  void respond_status(status s, const std::string& text) {
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(s)).str(text);
    respond(w);
  }

  void handle() {
    std::string why;
    auto req = rdzv::decode_request(body_.data(), body_.size(), why);
    if (!req)
      return refuse(why);
    generation_ = req->generation;
    if (st_.superseded(generation_))
      return respond_status(status::superseded, st_.superseded_text(generation_));
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(status::ok));
    switch (req->op) {
      case rdzv::op::set: {
        if (req->value.size() > st_.opts.max_value_size)
          return respond_status(status::bad_request, "value too large");
        st_.data[req->keys.front()] = std::move(req->value);
        st_.notify_waiters();
        return respond(w);
      }
      case rdzv::op::get: return begin_wait(rdzv::op::get, std::move(req->keys), req->wait_ms);
      case rdzv::op::add: {
        const auto& key = req->keys.front();
        auto i = st_.data.find(key);
        auto value = rdzv::add_counter(i == st_.data.end() ? nullptr : &i->second, req->delta,
                                       why);
        if (!value)
          return respond_status(status::bad_request, "key '" + key + "' " + why);
        auto text = std::to_string(*value);
        st_.data[key] = std::vector<char>(text.begin(), text.end());
        st_.notify_waiters();
        w.i64(*value);
        return respond(w);
      }
      case rdzv::op::check: {
        bool all = true;
        for (auto& k : req->keys)
          all = all && st_.has(k);
        w.u8(all ? 1 : 0);
        return respond(w);
      }
      case rdzv::op::wait:
        return begin_wait(rdzv::op::wait, std::move(req->keys), req->wait_ms);
      case rdzv::op::erase: {
        w.u8(st_.data.erase(req->keys.front()) != 0 ? 1 : 0);
        return respond(w);
      }
    }
  }

  void begin_wait(rdzv::op op, std::vector<std::string> keys, uint32_t wait_ms) {
    wait_op_ = op;
    wait_keys_ = std::move(keys);
    if (auto w = reply_if_ready())
      return respond(*w);
    if (wait_ms == 0)
      return respond_status(status::timeout, "keys missing");
    waiting_ = true;
    auto gen = ++wait_gen_;
    auto self = shared_from_this();
    st_.waiting.insert(self);
    st_.blocked = st_.waiting.size();
    timer_.expires_after(std::chrono::milliseconds(wait_ms));
    timer_.async_wait([this, self, gen](boost::system::error_code ec) {
      if (ec || !waiting_ || gen != wait_gen_)
        return;
      rdzv::writer w;
      w.u8(static_cast<uint8_t>(status::timeout)).str("keys missing");
      finish_wait(w);
    });
    // A blocking client sends nothing while it waits: readable data or EOF now means
    // it went away (or broke the protocol), so stop holding its waiter.
    sock_.async_read_some(asio::buffer(probe_), [this, self, gen](boost::system::error_code ec,
                                                                  size_t) {
      if (ec == asio::error::operation_aborted || gen != wait_gen_ || !waiting_)
        return;
      close();
    });
  }

  // The ok reply of the pending get/wait, or nullopt while a key is missing.
  std::optional<rdzv::writer> reply_if_ready() {
    for (auto& k : wait_keys_)
      if (!st_.has(k))
        return std::nullopt;
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(status::ok));
    if (wait_op_ == rdzv::op::get)
      w.str(st_.data[wait_keys_.front()]);
    return w;
  }

  server_state& st_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  std::string peer_;
  std::array<char, rdzv::frame_header_size> header_{};
  std::vector<char> body_;
  std::vector<char> out_;
  std::array<char, 1> probe_{};
  rdzv::op wait_op_ = rdzv::op::get;
  std::vector<std::string> wait_keys_;
  bool waiting_ = false;
  uint64_t wait_gen_ = 0;
  uint32_t generation_ = 0; // the rendezvous generation of the current request
};

void server_state::notify_waiters() {
  // Copy: completing a wait removes the session from `waiting`.
  std::vector<session_ptr> blocked(waiting.begin(), waiting.end());
  for (auto& s : blocked)
    if (s->waiting())
      s->try_complete_wait();
}

void server_state::abandon_superseded() {
  // Copy: completing a wait removes the session from `waiting`.
  std::vector<session_ptr> blocked(waiting.begin(), waiting.end());
  for (auto& s : blocked) {
    if (!s->waiting() || !superseded(s->generation()))
      continue;
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(status::superseded)).str(superseded_text(s->generation()));
    s->finish_wait(w);
  }
}

void server_state::accept() {
  acceptor.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
    if (ec == asio::error::operation_aborted || stopping)
      return;
    if (!ec) {
      if (sessions.size() >= opts.max_clients) {
        spdlog::warn("rendezvous server {}: refusing a connection, {} clients already "
                     "(raise max_clients)",
                     name, sessions.size());
        boost::system::error_code ignored;
        sock.close(ignored);
      } else {
        sock.set_option(tcp::no_delay(true), ec);
        auto s = std::make_shared<session>(*this, std::move(sock));
        sessions.insert(s);
        ++open;
        s->start();
      }
    } else {
      spdlog::warn("rendezvous server {}: accept failed: {}", name, ec.message());
    }
    accept();
  });
}

void server_state::shutdown() {
  stopping = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  std::vector<session_ptr> all(sessions.begin(), sessions.end());
  for (auto& s : all) {
    if (s->waiting()) {
      // The reply write completes and then closes (stopping is set).
      rdzv::writer w;
      w.u8(static_cast<uint8_t>(status::shutting_down))
        .str("rendezvous server " + name + " is stopping");
      s->finish_wait(w);
    } else {
      s->close();
    }
  }
}

} // namespace

struct rendezvous_server::impl {
  explicit impl(rendezvous_server_options o) : st(std::move(o)) {}

  server_state st;
  std::thread thread;
  std::future<void> done;
  std::atomic<uint16_t> port{0};
  std::mutex mtx; // serialises start/stop
  bool started = false;
};

rendezvous_server::rendezvous_server(rendezvous_server_options opts)
  : impl_(std::make_unique<impl>(std::move(opts))) {}

rendezvous_server::~rendezvous_server() {
  try {
    stop();
  } catch (...) {
    // stop() joins the I/O thread and closes sockets; a destructor must not throw, and
    // nothing is left to clean up that the process exit would not.
  }
}

caf::error rendezvous_server::start() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto& st = impl_->st;
  auto where = st.opts.bind_address + ":" + std::to_string(st.opts.port);
  if (impl_->started)
    return make_error(errc::not_ready,
                      "rendezvous server " + where + " was already started; create a new one");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(st.opts.bind_address, ec);
  if (ec)
    return make_error(errc::invalid_argument, "rendezvous server: bind address '"
                                                + st.opts.bind_address
                                                + "' is not an IP address: " + ec.message());
  tcp::endpoint ep{addr, st.opts.port};
  auto fail = [&](const char* step) {
    boost::system::error_code ignored;
    st.acceptor.close(ignored); // so a later start() can try again
    return make_error(errc::transport_failed, std::string("rendezvous server could not ")
                                                + step + " " + where + ": " + ec.message()
                                                + "; pick another port or free this one");
  };
  if (st.acceptor.open(ep.protocol(), ec))
    return fail("open a socket for");
  st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (st.acceptor.bind(ep, ec))
    return fail("bind");
  if (st.acceptor.listen(asio::socket_base::max_listen_connections, ec))
    return fail("listen on");
  impl_->port = st.acceptor.local_endpoint(ec).port();
  st.name = st.opts.bind_address + ":" + std::to_string(impl_->port.load());
  st.accept();
  std::promise<void> done;
  impl_->done = done.get_future();
  impl_->thread = std::thread([&st, done = std::move(done)]() mutable {
    try {
      st.io.run();
    } catch (const std::exception& e) {
      // Handlers do not throw by design; log rather than terminate the driver.
      spdlog::error("rendezvous server {}: io thread failed: {}", st.name, e.what());
    }
    done.set_value();
  });
  impl_->started = true;
  return caf::none;
}

uint16_t rendezvous_server::port() const {
  return impl_->port.load();
}

store_address rendezvous_server::address() const {
  return store_address{impl_->st.opts.bind_address, port()};
}

void rendezvous_server::stop() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (!impl_->thread.joinable())
    return;
  auto& st = impl_->st;
  asio::post(st.io, [&st] { st.shutdown(); });
  if (impl_->done.wait_for(st.opts.stop_grace) != std::future_status::ready)
    st.io.stop(); // a client that never reads its reply must not hold up the driver
  impl_->thread.join();
  st.waiting.clear();
  st.sessions.clear();
  st.open = 0;
  st.blocked = 0;
}

void rendezvous_server::fence(uint32_t generation) {
  auto& st = impl_->st;
  auto prev = st.fence.load();
  while (generation > prev && !st.fence.compare_exchange_weak(prev, generation)) {
  }
  if (generation <= prev)
    return;
  // New requests of an older generation are refused by their handler from now on; the
  // ones already blocked are answered on the io thread, which owns them.
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->thread.joinable())
    asio::post(st.io, [&st] { st.abandon_superseded(); });
}

uint32_t rendezvous_server::fence_generation() const {
  return impl_->st.fence.load();
}

size_t rendezvous_server::refused_frames() const {
  return impl_->st.refused.load();
}

size_t rendezvous_server::open_connections() const {
  return impl_->st.open.load();
}

size_t rendezvous_server::blocked_clients() const {
  return impl_->st.blocked.load();
}

} // namespace cafex
