// The rendezvous store against a real server on 127.0.0.1, port 0: many clients, raw
// sockets that break the protocol, and stop() while clients are blocked.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <limits>
#include <set>
#include <thread>

#include <boost/asio.hpp>

#include "runtime/error.hpp"
#include "transport/rendezvous_client.hpp"
#include "transport/rendezvous_protocol.hpp"
#include "transport/rendezvous_server.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
namespace asio = boost::asio;

namespace {

std::vector<char> bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

std::unique_ptr<rendezvous_client> connect_to(const rendezvous_server& srv) {
  auto c = rendezvous_client::connect(srv.address(), 5s);
  REQUIRE_MESSAGE(c, describe(c.error()));
  return std::move(*c);
}

// Polls a condition until it holds or the deadline passes: waiting on state, not time.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto deadline = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() >= deadline)
      return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

long long ms_since(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t).count();
}

// A raw socket to the server for sending frames no well-behaved client would.
struct raw_socket {
  asio::io_context io;
  asio::ip::tcp::socket sock{io};

  explicit raw_socket(uint16_t port) {
    sock.connect({asio::ip::make_address("127.0.0.1"), port});
  }

  void send(const std::vector<char>& data) { asio::write(sock, asio::buffer(data)); }

  // True when the server closed the connection (read hits EOF or reset).
  bool closed_by_server() {
    char c;
    boost::system::error_code ec;
    sock.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
};

} // namespace

TEST_CASE("parse_store_url accepts tcp://host:port and explains what is wrong") {
  auto a = parse_store_url("tcp://127.0.0.1:29500");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 29500);
  auto b = parse_store_url("tcp://[::1]:80");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "[::1]:80");
  CHECK(parse_store_url("tcp://node-a.cluster:1")->host == "node-a.cluster");
  for (auto bad : {"127.0.0.1:1", "tcp://127.0.0.1", "tcp://:80", "tcp://h:0", "tcp://h:70000",
                   "tcp://h:8x", "tcp://::1:80", "env://"}) {
    auto r = parse_store_url(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::invalid_argument);
    CHECK(describe(r.error()).find(bad) != std::string::npos);
  }
}

TEST_CASE("set, get, add, check, wait and erase against a real server") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  REQUIRE(srv.port() != 0);
  auto c = connect_to(srv);
  REQUIRE(!c->set("a", bytes("hello"), 1s));
  auto v = c->get("a", 1s);
  REQUIRE(v);
  CHECK(*v == bytes("hello"));
  CHECK(*c->add("n", 5, 1s) == 5);
  CHECK(*c->add("n", -2, 1s) == 3);
  CHECK(*c->get("n", 1s) == bytes("3"));
  CHECK(*c->check({"a", "n"}, 1s));
  CHECK_FALSE(*c->check({"a", "missing"}, 1s));
  CHECK(!c->wait({"a", "n"}, 1s));
  CHECK(*c->erase("a", 1s));
  CHECK_FALSE(*c->erase("a", 1s));
  REQUIRE(!c->set("s", bytes("abc"), 1s));
  auto bad = c->add("s", 1, 1s);
  REQUIRE_FALSE(bad);
  CHECK(code_of(bad.error()) == errc::invalid_argument);
  CHECK(*c->get("n", 1s) == bytes("3")); // the refused request left the connection usable
  // Empty and binary values round-trip.
  REQUIRE(!c->set("empty", {}, 1s));
  CHECK(c->get("empty", 1s)->empty());
  std::vector<char> bin(70000);
  for (size_t i = 0; i < bin.size(); ++i)
    bin[i] = static_cast<char>(i * 7);
  REQUIRE(!c->set("bin", bin, 1s));
  CHECK(*c->get("bin", 1s) == bin);
}

TEST_CASE("an add that would overflow int64 is refused and leaves the counter as it was") {
  // Found by tests/fuzz/fuzz_rendezvous_request.cpp: the server's sum was signed overflow.
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto c = connect_to(srv);
  auto max = std::to_string(std::numeric_limits<int64_t>::max());
  REQUIRE(!c->set("n", bytes(max), 1s));
  auto over = c->add("n", 1, 1s);
  REQUIRE_FALSE(over);
  CHECK(code_of(over.error()) == errc::invalid_argument);
  CHECK(describe(over.error()).find("would overflow") != std::string::npos);
  CHECK(*c->get("n", 1s) == bytes(max)); // unchanged, and the connection still serves
  CHECK(*c->add("n", -1, 1s) == std::numeric_limits<int64_t>::max() - 1);
  CHECK(srv.refused_frames() == 0); // a well-formed request: answered, not dropped
}

TEST_CASE("prefix_store keeps groups apart") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto c = connect_to(srv);
  prefix_store pp0{"pp0/tp", *c};
  prefix_store pp1{"pp1/tp/", *c};
  REQUIRE(!pp0.set("0", bytes("x"), 1s));
  REQUIRE(!pp1.set("0", bytes("y"), 1s));
  CHECK(*pp0.get("0", 1s) == bytes("x"));
  CHECK(*pp1.get("0", 1s) == bytes("y"));
  CHECK(*c->get("pp0/tp/0", 1s) == bytes("x"));
  CHECK_FALSE(*c->check({"0"}, 1s));
}

TEST_CASE("get blocks until another client sets the key") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto getter = connect_to(srv);
  auto setter = connect_to(srv);
  auto waited = std::async(std::launch::async, [&] { return getter->get("late", 10s); });
  auto waiter = connect_to(srv);
  auto waited_all = std::async(std::launch::async, [&] {
    return waiter->wait({"late", "later"}, 10s);
  });
  REQUIRE(eventually([&] { return srv.blocked_clients() == 2; }));
  REQUIRE(!setter->set("late", bytes("v"), 1s));
  REQUIRE(waited.wait_for(5s) == std::future_status::ready);
  auto v = waited.get();
  REQUIRE_MESSAGE(v, describe(v.error()));
  CHECK(*v == bytes("v"));
  // The waiter needs both keys: still blocked after the first.
  CHECK(srv.blocked_clients() == 1);
  CHECK(*setter->add("later", 1, 1s) == 1);
  REQUIRE(waited_all.wait_for(5s) == std::future_status::ready);
  CHECK(!waited_all.get());
}

TEST_CASE("32 clients hammering add on one key reach the exact count") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  constexpr int clients = 32;
  constexpr int adds = 100;
  std::vector<std::future<std::vector<int64_t>>> results;
  for (int i = 0; i < clients; ++i)
    results.push_back(std::async(std::launch::async, [&] {
      std::vector<int64_t> seen;
      auto c = rendezvous_client::connect(srv.address(), 10s);
      if (!c)
        return seen;
      for (int k = 0; k < adds; ++k)
        if (auto v = (*c)->add("counter", 1, 10s))
          seen.push_back(*v);
      return seen;
    }));
  std::set<int64_t> all;
  for (auto& f : results) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    for (auto v : f.get())
      all.insert(v);
  }
  // Every add saw a distinct value: the increments were atomic.
  CHECK(all.size() == size_t{clients * adds});
  CHECK(*all.begin() == 1);
  CHECK(*all.rbegin() == clients * adds);
  auto c = connect_to(srv);
  CHECK(*c->get("counter", 1s) == bytes(std::to_string(clients * adds)));
}

TEST_CASE("a client that disconnects mid-request does not disturb the others") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto c = connect_to(srv);
  {
    raw_socket raw{srv.port()};
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(rdzv::op::set))
      .u32(0)
      .u32(0)
      .str("k")
      .str(std::string(100, 'x'));
    auto frame = w.frame();
    frame.resize(frame.size() / 2); // half a frame, then close
    raw.send(frame);
  }
  {
    // Blocked in get, then gone: the server must drop the waiter, not keep it.
    raw_socket raw{srv.port()};
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(rdzv::op::get)).u32(60000).u32(0).str("never");
    raw.send(w.frame());
    REQUIRE(eventually([&] { return srv.blocked_clients() == 1; }));
  }
  CHECK(eventually([&] { return srv.blocked_clients() == 0 && srv.open_connections() == 1; }));
  REQUIRE(!c->set("k", bytes("ok"), 1s));
  CHECK(*c->get("k", 1s) == bytes("ok"));
  CHECK(srv.refused_frames() == 0); // a peer leaving is not a malformed frame
}

TEST_CASE("malformed and oversized frames close only their connection") {
  rendezvous_server_options opts;
  opts.max_value_size = 1024;
  rendezvous_server srv{opts};
  REQUIRE(!srv.start());
  auto c = connect_to(srv);
  {
    raw_socket raw{srv.port()};
    raw.send({'\xff', '\xff', '\xff', '\xff'}); // 4 GiB announced
    CHECK(raw.closed_by_server());
  }
  {
    raw_socket raw{srv.port()};
    rdzv::writer w;
    w.u8(99).u32(0).u32(0).str("k"); // unknown op
    raw.send(w.frame());
    CHECK(raw.closed_by_server());
  }
  {
    raw_socket raw{srv.port()};
    rdzv::writer w;
    w.u8(static_cast<uint8_t>(rdzv::op::wait)).u32(0).u32(0).u32(1000000); // bogus key count
    raw.send(w.frame());
    CHECK(raw.closed_by_server());
  }
  CHECK(srv.refused_frames() == 3);
  // A value over the limit through the real client is refused as a whole frame.
  auto big = c->set("big", std::vector<char>(4096), 2s);
  REQUIRE(big);
  CHECK(code_of(big) == errc::transport_failed);
  // The client reconnects and the server still serves.
  REQUIRE(!c->set("k", bytes("still here"), 2s));
  CHECK(*c->get("k", 1s) == bytes("still here"));
}

TEST_CASE("stop() wakes every blocked client promptly with an error") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  constexpr int n = 4;
  std::vector<std::unique_ptr<rendezvous_client>> clients;
  std::vector<std::future<caf::expected<std::vector<char>>>> gets;
  for (int i = 0; i < n; ++i)
    clients.push_back(connect_to(srv));
  for (int i = 0; i < n; ++i)
    gets.push_back(
      std::async(std::launch::async, [&, i] { return clients[i]->get("never", 60s); }));
  REQUIRE(eventually([&] { return srv.blocked_clients() == size_t{n}; }));
  auto t0 = clock_type::now();
  srv.stop();
  for (auto& g : gets) {
    REQUIRE(g.wait_for(5s) == std::future_status::ready);
    auto r = g.get();
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == errc::transport_failed);
    CHECK(describe(r.error()).find("shutting down") != std::string::npos);
  }
  CHECK(ms_since(t0) < 2000);
  srv.stop(); // idempotent
}

TEST_CASE("fence() releases waits of earlier generations at once, and only those") {
  // Issue #14, item 5: a rank waiting in the rendezvous of a rebuild that a second loss
  // cut short (its peer died before publishing its address) must let go as soon as the
  // next rebuild starts, not at its own deadline.
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto at = [&](uint32_t generation) {
    rendezvous_client_options o;
    o.generation = generation;
    auto c = rendezvous_client::connect(srv.address(), 5s, o);
    REQUIRE_MESSAGE(c, describe(c.error()));
    return std::move(*c);
  };
  auto none = at(0); // the dataflow's channels name no generation: never fenced
  auto old1 = at(1);
  auto old2 = at(2);
  auto next = at(3);
  auto g_none = std::async(std::launch::async, [&] { return none->get("tp1/peer", 60s); });
  auto g_old1 = std::async(std::launch::async, [&] { return old1->get("tp1/g1/peer", 60s); });
  auto w_old2 = std::async(std::launch::async,
                           [&] { return old2->wait({"tp1/g2/peer"}, 60s); });
  auto g_next = std::async(std::launch::async, [&] { return next->get("tp1/g3/peer", 60s); });
  REQUIRE(eventually([&] { return srv.blocked_clients() == 4; }));
  auto t0 = clock_type::now();
  srv.fence(3);
  CHECK(srv.fence_generation() == 3);
  REQUIRE(g_old1.wait_for(5s) == std::future_status::ready);
  REQUIRE(w_old2.wait_for(5s) == std::future_status::ready);
  CHECK(ms_since(t0) < 2000);
  auto r1 = g_old1.get();
  REQUIRE_FALSE(r1);
  CHECK(code_of(r1.error()) == errc::transport_failed);
  CHECK_MESSAGE(describe(r1.error()).find("superseded") != std::string::npos,
                describe(r1.error()));
  auto r2 = w_old2.get();
  REQUIRE(r2);
  CHECK(code_of(r2) == errc::transport_failed);
  // The current generation and generation 0 still wait, and get their keys.
  CHECK(srv.blocked_clients() == 2);
  auto setter = connect_to(srv);
  REQUIRE(!setter->set("tp1/g3/peer", bytes("3"), 1s));
  REQUIRE(!setter->set("tp1/peer", bytes("0"), 1s));
  REQUIRE(g_next.wait_for(5s) == std::future_status::ready);
  REQUIRE(g_none.wait_for(5s) == std::future_status::ready);
  CHECK(*g_next.get() == bytes("3"));
  CHECK(*g_none.get() == bytes("0"));
  // Later requests of a fenced generation fail at once, on the same connection (the
  // reply kept it in sync), even for a key that exists.
  REQUIRE(!setter->set("tp1/g1/peer", bytes("1"), 1s));
  auto t1 = clock_type::now();
  auto late = old1->get("tp1/g1/peer", 60s);
  REQUIRE_FALSE(late);
  CHECK(code_of(late.error()) == errc::transport_failed);
  CHECK(ms_since(t1) < 1000);
  CHECK(old1->set("tp1/g1/other", bytes("x"), 1s));
  // A fence never goes back, and a client of the new generation is served.
  srv.fence(2);
  CHECK(srv.fence_generation() == 3);
  REQUIRE(!next->set("tp1/g3/other", bytes("y"), 1s));
  CHECK(*next->get("tp1/g3/other", 1s) == bytes("y"));
}

TEST_CASE("get on a missing key times out in about its deadline") {
  rendezvous_server srv;
  REQUIRE(!srv.start());
  auto c = connect_to(srv);
  auto t0 = clock_type::now();
  auto r = c->get("missing", 300ms);
  auto took = ms_since(t0);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::timeout);
  auto text = describe(r.error());
  CHECK(text.find("'missing'") != std::string::npos);
  CHECK(text.find(srv.address().to_string()) != std::string::npos);
  CHECK(took >= 290);
  CHECK(took < 1000);
  // The server's timeout reply kept the connection in sync.
  REQUIRE(!c->set("x", bytes("1"), 1s));
  CHECK(*c->get("x", 1s) == bytes("1"));
}

TEST_CASE("connecting where nothing listens fails clearly within the deadline") {
  uint16_t port = 0;
  {
    // Borrow an ephemeral port and release it, so nothing listens there.
    asio::io_context io;
    asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
    port = a.local_endpoint().port();
  }
  auto t0 = clock_type::now();
  auto c = rendezvous_client::connect({"127.0.0.1", port}, 400ms);
  auto took = ms_since(t0);
  REQUIRE_FALSE(c);
  CHECK(code_of(c.error()) == errc::timeout);
  auto text = describe(c.error());
  CHECK(text.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  INFO(text);
  CHECK(text.find("refused") != std::string::npos);
  CHECK(took < 1000);
}

TEST_CASE("a client started before the server connects once it appears") {
  // Reserve a port, start the client, then start the server on that port.
  rendezvous_server probe;
  REQUIRE(!probe.start());
  auto port = probe.port();
  probe.stop();
  auto pending = std::async(std::launch::async, [&] {
    return rendezvous_client::connect({"127.0.0.1", port}, 10s);
  });
  rendezvous_server_options opts;
  opts.port = port;
  rendezvous_server srv{opts};
  REQUIRE(!srv.start());
  REQUIRE(pending.wait_for(10s) == std::future_status::ready);
  auto c = pending.get();
  REQUIRE_MESSAGE(c, describe(c.error()));
  CHECK(!(*c)->set("k", bytes("v"), 1s));
}

TEST_CASE("binding a port in use fails with the address in the message") {
  rendezvous_server first;
  REQUIRE(!first.start());
  rendezvous_server_options opts;
  opts.port = first.port();
  rendezvous_server second{opts};
  auto err = second.start();
  REQUIRE(err);
  CHECK(code_of(err) == errc::transport_failed);
  CHECK(describe(err).find("127.0.0.1:" + std::to_string(first.port())) != std::string::npos);
}
