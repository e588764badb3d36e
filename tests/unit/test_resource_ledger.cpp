// The node agent's resource ledger, link MACs and the cluster config file.
#include <doctest/doctest.h>

#include <fstream>
#include <unistd.h>

#include "runtime/plan/resource_ledger.hpp"
#include "actors/cluster/cluster.hpp"
#include "runtime/error.hpp"
#include "transport/link_security.hpp"

using namespace cafex;

TEST_CASE("ledger: reserve all or nothing, fractional shares, release by owner") {
  resource_ledger l({0, 1});
  auto a = l.reserve("d1", {{0, 0, 10000}, {1, 1, 5000}}, "n");
  REQUIRE(a);
  CHECK(l.free_units() == std::vector<int64_t>{0, 5000});
  auto b = l.reserve("d2", {{0, 1, 5000}, {1, 1, 5000}}, "n"); // needs 1.0 of device 1
  REQUIRE_FALSE(b);
  CHECK(code_of(b.error()) == errc::placement_failed);
  CHECK(describe(b.error()).find("device 1 has 0.5 free, needs 1") != std::string::npos);
  CHECK(l.free_units() == std::vector<int64_t>{0, 5000}); // nothing taken
  auto c = l.reserve("d2", {{0, 1, 5000}}, "n");
  REQUIRE(c);
  CHECK(l.holds(*c, 0, 1));
  CHECK_FALSE(l.holds(*c, 0, 0));
  CHECK(l.release("d1", 0) == 1);
  CHECK(l.free_units() == std::vector<int64_t>{10000, 5000});
  CHECK(l.release("d1", *c) == 0); // not d1's
  CHECK_FALSE(l.reserve("d3", {{0, 7, 10000}}, "n"));
  CHECK_FALSE(l.reserve("d3", {{0, 0, 0}}, "n"));
}

TEST_CASE("link MACs: both sides agree, labels differ, tokens matter") {
  auto nc = make_nonce();
  auto ns = make_nonce();
  CHECK(nc.size() == 64);
  CHECK(nc != ns);
  CHECK(server_mac("secret-token-123", nc, ns, 0)
        == server_mac("secret-token-123", nc, ns, 0));
  CHECK(server_mac("secret-token-123", nc, ns, 0)
        != client_mac("secret-token-123", nc, ns, 0));
  CHECK(client_mac("secret-token-123", nc, ns, 0)
        != client_mac("secret-token-124", nc, ns, 0));
  CHECK(client_mac("secret-token-123", nc, ns, 0)
        != client_mac("secret-token-123", nc, ns, 1));
  // RFC 4231 test case 2.
  CHECK(hmac_hex("Jefe", "what do ya want for nothing?")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(equal_secret("abc", "abc"));
  CHECK_FALSE(equal_secret("abc", "abd"));
}

TEST_CASE("cluster config file and HOST:PORT") {
  std::string host;
  uint16_t port = 0;
  CHECK_FALSE(parse_host_port("10.0.0.1:7100", "--nodes", host, port));
  CHECK(host == "10.0.0.1");
  CHECK(port == 7100);
  CHECK(parse_host_port("10.0.0.1", "--nodes", host, port));
  CHECK(parse_host_port("10.0.0.1:0", "--nodes", host, port));
  CHECK(parse_host_port(":7100", "--nodes", host, port));
  char tmpl[] = "/tmp/cafex-cc-XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  {
    std::ofstream(tmpl) << R"({"nodes": ["10.0.0.1:7100", {"address": "10.0.0.2:7100"}],
                              "driver_ip": "10.0.0.1"})";
    cluster_options o;
    REQUIRE_FALSE(load_cluster_config(tmpl, o));
    CHECK(o.nodes == std::vector<std::string>{"10.0.0.1:7100", "10.0.0.2:7100"});
    CHECK(o.host_ip == "10.0.0.1");
  }
  for (auto bad : {"{", R"({"nodes": []})", R"({"nodes": ["10.0.0.1"]})", R"({"nodes": [7]})",
                   R"({"nodes": ["a:1"], "driver_ip": 3})"}) {
    std::ofstream(tmpl) << bad;
    cluster_options o;
    auto err = load_cluster_config(tmpl, o);
    CHECK_MESSAGE(code_of(err) == errc::invalid_config, bad);
  }
  unlink(tmpl);
  CHECK(local_ip_facing("127.0.0.1").value() == "127.0.0.1");
}
