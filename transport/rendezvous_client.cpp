#include "transport/rendezvous_client.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>

#include <boost/asio.hpp>

#include "runtime/error.hpp"
#include "transport/rendezvous_protocol.hpp"

namespace cafex {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using rdzv::status;

namespace {

long long ms_between(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

// "get 'a'" / "wait 'a', 'b' (+3 more)": what the error message says was asked.
std::string describe_request(rdzv::op op, const std::vector<std::string>& keys) {
  std::string out = rdzv::to_string(op);
  for (size_t i = 0; i < keys.size() && i < 3; ++i)
    out += (i == 0 ? " '" : ", '") + keys[i] + "'";
  if (keys.size() > 3)
    out += " (+" + std::to_string(keys.size() - 3) + " more)";
  return out;
}

} // namespace

struct rendezvous_client::impl {
  impl(store_address a, rendezvous_client_options o)
    : addr(std::move(a)), opts(o), name(addr.to_string()) {}

  asio::io_context io;
  tcp::socket sock{io};
  store_address addr;
  rendezvous_client_options opts;
  std::string name;
  bool connected = false;
  std::mutex mtx;

  void drop() {
    boost::system::error_code ignored;
    sock.close(ignored);
    connected = false;
  }

  // Runs the private io_context until `done` or `deadline`. On the deadline it closes
  // the socket and drains the aborted handlers (they reference the caller's locals).
  bool run_until(const bool& done, clock_type::time_point deadline) {
    io.restart();
    while (!done) {
      if (io.run_one_until(deadline) == 0 && !done) {
        drop();
        io.restart();
        io.run();
        return false;
      }
    }
    return true;
  }

  caf::expected<tcp::resolver::results_type> resolve() {
    // Numeric hosts (the common case) skip the resolver and its helper thread.
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(addr.host, ec);
    if (!ec)
      return tcp::resolver::results_type::create(tcp::endpoint{ip, addr.port}, addr.host,
                                                 std::to_string(addr.port));
    tcp::resolver resolver{io};
    auto res = resolver.resolve(addr.host, std::to_string(addr.port), ec);
    if (ec)
      return make_error(errc::transport_failed, "cannot resolve rendezvous store host '"
                                                  + addr.host + "': " + ec.message()
                                                  + "; check distributed_init_method");
    return res;
  }

  caf::error connect(clock_type::time_point deadline, const std::string& what = "") {
    auto start = clock_type::now();
    auto endpoints = resolve();
    if (!endpoints)
      return endpoints.error();
    std::string last_error;
    int attempts = 0;
    auto pause = opts.first_retry;
    for (;;) {
      bool done = false;
      boost::system::error_code cec;
      asio::async_connect(sock, *endpoints,
                          [&](boost::system::error_code ec, const tcp::endpoint&) {
                            cec = ec;
                            done = true;
                          });
      if (!run_until(done, deadline)) {
        // Keep the previous attempt's error: "refused" says more than "cut short".
        if (attempts == 0)
          last_error = "the connection attempt did not complete";
        break;
      }
      ++attempts;
      if (!cec) {
        boost::system::error_code ignored;
        sock.set_option(tcp::no_delay(true), ignored);
        connected = true;
        return caf::none;
      }
      last_error = cec.message();
      drop();
      auto now = clock_type::now();
      if (now >= deadline)
        break;
      // Back-off between attempts while the driver is still starting its server; this
      // is retry pacing, not synchronisation.
      std::this_thread::sleep_for(std::min<clock_type::duration>(pause, deadline - now));
      pause = std::min(pause * 2, opts.max_retry);
    }
    return make_error(errc::timeout, "could not connect to the rendezvous store at " + name
                                       + (what.empty() ? "" : " for " + what) + " within "
                                       + std::to_string(ms_between(start, clock_type::now()))
                                       + " ms (last error: " + last_error
                                       + "); check that the driver is running and that "
                                         "distributed_init_method points at it");
  }

  // Sends one request and returns the reply body (status byte first).
  caf::expected<std::vector<char>>
  exchange(rdzv::op op, const rdzv::writer& req, const std::vector<std::string>& keys,
           clock_type::time_point deadline, clock_type::time_point io_deadline) {
    auto what = describe_request(op, keys);
    if (!connected)
      if (auto err = connect(deadline, what))
        return err;
    auto started = clock_type::now();
    auto frame = req.frame();
    std::array<char, rdzv::frame_header_size> header{};
    std::vector<char> body;
    bool done = false;
    boost::system::error_code io_ec;
    std::string violation;
    auto finish = [&](boost::system::error_code ec) {
      io_ec = ec;
      done = true;
    };
    // write -> read length -> read body, chained so one deadline covers the exchange.
    asio::async_write(sock, asio::buffer(frame), [&](boost::system::error_code ec, size_t) {
      if (ec)
        return finish(ec);
      asio::async_read(sock, asio::buffer(header), [&](boost::system::error_code ec, size_t) {
        if (ec)
          return finish(ec);
        auto len = rdzv::decode_length(header.data());
        if (len == 0 || len > opts.max_value_size + rdzv::frame_overhead) {
          violation = "a reply frame of " + std::to_string(len) + " bytes";
          return finish({});
        }
        body.resize(len);
        asio::async_read(sock, asio::buffer(body),
                         [&](boost::system::error_code ec, size_t) { finish(ec); });
      });
    });
    if (!run_until(done, io_deadline))
      return make_error(errc::timeout, "rendezvous store at " + name + " did not answer "
                                         + what + " within "
                                         + std::to_string(ms_between(started, io_deadline))
                                         + " ms; check that the driver is alive");
    if (io_ec || !violation.empty()) {
      drop();
      return make_error(errc::transport_failed,
                        "rendezvous store at " + name + " failed during " + what + ": "
                          + (io_ec ? io_ec.message() : "protocol violation, " + violation)
                          + "; the driver may have exited or stopped its server");
    }
    return body;
  }
};

// Whether the server holds `op` until its keys are set (get, wait): the reply may then
// come as late as the request's own timeout, so the socket waits a little longer.
static bool waits_on_server(rdzv::op op) {
  return op == rdzv::op::get || op == rdzv::op::wait;
}

// Runs one request and maps the reply's status to errors that name the server and keys.
// `parse` reads the ok payload.
template <class T, class Parse>
static caf::expected<T> call(rendezvous_client::impl& self, rdzv::op op,
                             const std::vector<std::string>& keys,
                             std::chrono::milliseconds timeout,
                             const std::function<void(rdzv::writer&)>& payload, Parse parse) {
  std::lock_guard<std::mutex> guard{self.mtx};
  const bool waits = waits_on_server(op);
  auto now = clock_type::now();
  auto deadline = now + std::max(timeout, std::chrono::milliseconds{0});
  auto io_deadline = waits ? deadline + self.opts.reply_grace : deadline;
  auto wait_ms = std::min<long long>(std::max<long long>(timeout.count(), 0),
                                     std::numeric_limits<uint32_t>::max());
  rdzv::writer req;
  req.u8(static_cast<uint8_t>(op))
    .u32(static_cast<uint32_t>(wait_ms))
    .u32(self.opts.generation);
  payload(req);
  auto body = self.exchange(op, req, keys, deadline, io_deadline);
  if (!body)
    return body.error();
  auto what = describe_request(op, keys);
  rdzv::reader r(body->data(), body->size());
  auto st = r.u8();
  if (st && *st == static_cast<uint8_t>(status::ok)) {
    if (auto value = parse(r); value && r.done())
      return std::move(*value);
  } else if (st && *st == static_cast<uint8_t>(status::timeout)) {
    return make_error(errc::timeout, "rendezvous store at " + self.name + ": " + what
                                       + " timed out after " + std::to_string(timeout.count())
                                       + " ms because the key was never set; check that "
                                         "every rank started and uses the same group name");
  } else if (st && *st == static_cast<uint8_t>(status::bad_request)) {
    auto why = r.str();
    return make_error(errc::invalid_argument, "rendezvous store at " + self.name + " refused "
                                                + what + ": "
                                                + why.value_or("no reason given"));
  } else if (st && *st == static_cast<uint8_t>(status::superseded)) {
    // The reply kept the stream in sync: the connection stays usable.
    auto why = r.str();
    return make_error(errc::transport_failed,
                      "rendezvous store at " + self.name + ": " + what
                        + " was abandoned: " + why.value_or("its generation was superseded")
                        + "; the group must be rebuilt under the new generation");
  } else if (st && *st == static_cast<uint8_t>(status::shutting_down)) {
    self.drop();
    return make_error(errc::transport_failed, "rendezvous store at " + self.name
                                                + " is shutting down; " + what
                                                + " was abandoned");
  }
  self.drop(); // unknown status or a malformed payload: the stream cannot be trusted
  return make_error(errc::transport_failed,
                    "rendezvous store at " + self.name + " sent a malformed reply to " + what);
}

caf::expected<std::unique_ptr<rendezvous_client>>
rendezvous_client::connect(const store_address& addr, duration timeout,
                           rendezvous_client_options opts) {
  if (addr.port == 0 || addr.host.empty())
    return make_error(errc::invalid_argument, "rendezvous store address '" + addr.to_string()
                                                + "' needs a host and a non-zero port");
  auto ptr = std::make_unique<impl>(addr, opts);
  if (auto err = ptr->connect(clock_type::now() + timeout))
    return err;
  return std::unique_ptr<rendezvous_client>(new rendezvous_client(std::move(ptr)));
}

rendezvous_client::rendezvous_client(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

rendezvous_client::~rendezvous_client() = default;

const store_address& rendezvous_client::address() const {
  return impl_->addr;
}

caf::error rendezvous_client::set(const std::string& key, const std::vector<char>& value,
                                  duration timeout) {
  auto res = call<bool>(
    *impl_, rdzv::op::set, {key}, timeout, [&](rdzv::writer& w) { w.str(key).str(value); },
    [](rdzv::reader&) { return std::optional<bool>{true}; });
  return res ? caf::none : res.error();
}

caf::expected<std::vector<char>> rendezvous_client::get(const std::string& key,
                                                        duration timeout) {
  return call<std::vector<char>>(
    *impl_, rdzv::op::get, {key}, timeout, [&](rdzv::writer& w) { w.str(key); },
    [](rdzv::reader& r) { return r.bytes(); });
}

caf::expected<int64_t> rendezvous_client::add(const std::string& key, int64_t delta,
                                              duration timeout) {
  return call<int64_t>(
    *impl_, rdzv::op::add, {key}, timeout, [&](rdzv::writer& w) { w.str(key).i64(delta); },
    [](rdzv::reader& r) { return r.i64(); });
}

static void write_keys(rdzv::writer& w, const std::vector<std::string>& keys) {
  w.u32(static_cast<uint32_t>(keys.size()));
  for (auto& k : keys)
    w.str(k);
}

static std::optional<bool> read_flag(rdzv::reader& r) {
  auto x = r.u8();
  if (!x)
    return std::nullopt;
  return *x != 0;
}

caf::expected<bool> rendezvous_client::check(const std::vector<std::string>& keys,
                                             duration timeout) {
  return call<bool>(
    *impl_, rdzv::op::check, keys, timeout, [&](rdzv::writer& w) { write_keys(w, keys); },
    read_flag);
}

caf::error rendezvous_client::wait(const std::vector<std::string>& keys, duration timeout) {
  auto res = call<bool>(
    *impl_, rdzv::op::wait, keys, timeout, [&](rdzv::writer& w) { write_keys(w, keys); },
    [](rdzv::reader&) { return std::optional<bool>{true}; });
  return res ? caf::none : res.error();
}

caf::expected<bool> rendezvous_client::erase(const std::string& key, duration timeout) {
  return call<bool>(
    *impl_, rdzv::op::erase, {key}, timeout, [&](rdzv::writer& w) { w.str(key); }, read_flag);
}

} // namespace cafex
