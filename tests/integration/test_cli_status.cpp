// cafex status against real node agents on loopback: an idle agent's devices and no
// workers; while a driver runs, its reservations (named "driver on HOST, pid P, since T")
// and its running workers (rank, pid, uptime); after it ends, the devices free again and
// the agent's log saying the driver released them; an agent that cannot be reached is
// listed with the reason beside the others, and the exit code says so.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <csignal>
#include <set>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "agent_process.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

std::string bin() {
  return test::binary_from_env("CAFEX_BIN");
}

using agent = test::agent_process;

nlohmann::json status_of(const std::string& nodes, int expect_rc = 0) {
  auto r = test::run_command({bin(), "status", "--nodes", nodes, "--json"}, 60s);
  INFO(r.err);
  CHECK(r.exit_code == expect_rc);
  return nlohmann::json::parse(r.out);
}

/// Sends `request` to 127.0.0.1:port and answers what came back until the peer closed.
std::string http(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void) ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

} // namespace

TEST_CASE("cafex node --metrics-listen serves Prometheus text, and only that") {
  agent a{{"--metrics-listen", "127.0.0.1:0"}, "status-agent"};
  REQUIRE(test::wait_until(
    [&] { return test::read_file(a.out).find("metrics 127.0.0.1:") != std::string::npos; },
    10s));
  auto text = test::read_file(a.out);
  const auto port = static_cast<uint16_t>(
    std::stoi(text.substr(text.find("metrics 127.0.0.1:") + 18)));
  auto m = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  INFO(m);
  CHECK(m.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(m.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(m.find("cafex_node_devices 2\n") != std::string::npos);
  CHECK(m.find("cafex_node_device_free{device=\"0\"} 1.000000\n") != std::string::npos);
  CHECK(m.find("cafex_node_reservations 0\n") != std::string::npos);
  CHECK(m.find("cafex_node_workers{state=\"running\"} 0\n") != std::string::npos);
  CHECK(m.find("# TYPE cafex_node_refused_peers_total counter") != std::string::npos);
  CHECK(m.find("cafex_node_info{node_id=\"") != std::string::npos);
  CHECK(http(port, "POST /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0) == 0);
  CHECK(http(port, "GET /other HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0) == 0);
  CHECK(http(port, "\x16\x03\x01 garbage\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);
  CHECK(http(port, "GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0);
  CHECK(kill(a.pid, 0) == 0);
}

TEST_CASE("cafex status shows devices, a driver's reservations and workers, then frees") {
  test::become_subreaper();
  agent a;
  auto idle = status_of(a.address());
  REQUIRE(idle["nodes"].size() == 1);
  const auto& n = idle["nodes"][0];
  CHECK(n["address"] == a.address());
  CHECK(n["ip"] == "127.0.0.1");
  CHECK_FALSE(n["node_id"].get<std::string>().empty());
  CHECK_FALSE(n["version"].get<std::string>().empty());
  REQUIRE(n["devices"].size() == 2);
  CHECK(n["devices"][0]["free"] == 1.0);
  CHECK(n["devices"][0]["reserved"].empty());
  CHECK(n["workers"].empty());

  pid_t driver = test::start_background(
    {bin(), "run", "--nodes", a.address(), "--tp", "2", "--steps", "1000000", "--quiet"});
  nlohmann::json busy;
  REQUIRE_MESSAGE(test::wait_until(
                    [&] {
                      busy = status_of(a.address());
                      int running = 0;
                      for (const auto& w : busy["nodes"][0]["workers"])
                        running += w["state"] == "running";
                      return running == 2;
                    },
                    60s),
                  busy.dump());
  const auto& b = busy["nodes"][0];
  const std::string driver_name = "pid " + std::to_string(driver) + ", since ";
  for (const auto& d : b["devices"]) {
    CHECK(d["free"] == 0.0);
    REQUIRE(d["reserved"].size() == 1);
    CHECK(d["reserved"][0]["share"] == 1.0);
    CHECK(d["reserved"][0]["driver"].get<std::string>().rfind("driver on ", 0) == 0);
    CHECK(d["reserved"][0]["driver"].get<std::string>().find(driver_name)
          != std::string::npos);
  }
  std::set<int> ranks;
  for (const auto& w : b["workers"]) {
    ranks.insert(w["rank"].get<int>());
    CHECK(w["pid"].get<int64_t>() > 0);
    CHECK(w["uptime_s"].get<double>() >= 0.0);
    CHECK(w["driver"].get<std::string>().find(driver_name) != std::string::npos);
  }
  CHECK(ranks == std::set<int>{0, 1});
  auto table = test::run_command({bin(), "status", "--nodes", a.address()}, 60s);
  CHECK(table.exit_code == 0);
  CHECK(table.out.find("reserved by driver on ") != std::string::npos);
  CHECK(table.out.find("worker rank 0: pid ") != std::string::npos);

  kill(driver, SIGTERM);
  int st = 0;
  REQUIRE(test::wait_until([&] { return waitpid(driver, &st, WNOHANG) == driver; }, 60s));
  nlohmann::json after;
  REQUIRE_MESSAGE(test::wait_until(
                    [&] {
                      after = status_of(a.address());
                      const auto& x = after["nodes"][0];
                      return x["workers"].empty() && x["devices"][0]["free"] == 1.0
                             && x["devices"][1]["free"] == 1.0;
                    },
                    30s),
                  after.dump());
  CHECK(test::wait_until(
    [&] {
      auto log = test::read_file(a.err);
      return log.find("driver on ") != std::string::npos
             && log.find(" released ") != std::string::npos;
    },
    10s));
}

TEST_CASE("an agent that cannot be reached is listed with why, beside the others") {
  agent a;
  auto j = status_of("127.0.0.1:1," + a.address(), 1);
  REQUIRE(j["nodes"].size() == 2);
  CHECK(j["nodes"][0]["address"] == "127.0.0.1:1");
  CHECK_FALSE(j["nodes"][0]["error"].get<std::string>().empty());
  CHECK(j["nodes"][1]["address"] == a.address());
  CHECK_FALSE(j["nodes"][1].contains("error"));
  auto bad = test::run_command({bin(), "status"}, 30s);
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.rfind("error: name the node agents to ask", 0) == 0);
}
