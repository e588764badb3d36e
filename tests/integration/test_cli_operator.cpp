// What an operator types and trips over (the operator's-view issue): every flag works
// wherever it can or is refused with its own message (exit 2, one `error:` line, the first
// words checked here); enumerated values take any case; -tp/-pp and --rendezvous-port work;
// a node agent's --env-allow cannot lock out the device variable every driver sets; a peer
// that is not a cafex agent is named as such; a token file others can read is warned about.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <sstream>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent_process.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

std::string bin() {
  return test::binary_from_env("CAFEX_BIN");
}

test::command_result run(std::vector<std::string> args, std::chrono::seconds bound = 120s) {
  args.insert(args.begin(), {bin(), "run"});
  return test::run_command(args, bound);
}

/// A loopback listener; with `http`, a thread answers each connection as a web server.
struct listener {
  int fd = -1;
  uint16_t port = 0;
  std::atomic<bool> stop{false};
  std::thread server;

  explicit listener(bool http) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    if (http)
      server = std::thread([this] {
        while (!stop) {
          int c = ::accept(fd, nullptr, nullptr);
          if (c < 0)
            break;
          char buf[512];
          (void) ::recv(c, buf, sizeof buf, 0);
          const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
          (void) ::send(c, reply, sizeof reply - 1, MSG_NOSIGNAL);
          ::close(c);
        }
      });
  }
  ~listener() {
    stop = true;
    ::shutdown(fd, SHUT_RDWR);
    if (server.joinable())
      server.join();
    ::close(fd);
  }
};

using agent = test::agent_process;

} // namespace

TEST_CASE("flags that cannot apply are refused with their own message") {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
    {{"--gpus-per-worker", "1.5"},
     "error: --gpus-per-worker must be in (0, 1], e.g. 1 or 0.5, got 1.5"},
    {{"--connect-timeout", "5"},
     "error: --connect-timeout is the deadline to reach node agents"},
    {{"--host-ip", "192.0.2.1"},
     "error: --host-ip 192.0.2.1 is not an address of this machine"},
    {{"--rendezvous-port", "0"},
     "error: --rendezvous-port must be between 1 and 65535, got 0"},
    {{"--nodes", "127.0.0.1:1", "--devices", "2"},
     "error: --devices sizes the embedded node agent"},
    {{"--random-weights"}, "error: --random-weights applies to a checkpoint"},
    {{"--channel", "nccl", "--device", "cpu"},
     "error: --channel nccl hands the hidden states"},
  };
  for (const auto& [args, first_words] : cases) {
    auto r = run(args, 60s);
    INFO(args.front() << " -> " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.rfind(first_words, 0) == 0);
    CHECK(r.err.find('\n') == r.err.size() - 1);
  }
}

TEST_CASE("enumerated values take any case; -tp and -pp are vLLM's short forms") {
  auto r = run({"--channel", "SHM", "--device", "CPU", "--log-level", "ERROR", "--strategy",
                "PACK", "-tp", "2", "-pp", "1", "--steps", "1", "--json"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("\"tp\":2") != std::string::npos);
}

TEST_CASE("--rendezvous-port puts the store on that port, and a taken one is named") {
  uint16_t port = 0;
  {
    listener probe{false}; // an ephemeral port that was free a moment ago
    port = probe.port;
  }
  auto ok = run({"--tp", "2", "--steps", "1", "--rendezvous-port", std::to_string(port)});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  listener taken{false};
  auto r = run({"--tp", "2", "--steps", "1", "--rendezvous-port", std::to_string(taken.port)});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--rendezvous-port " + std::to_string(taken.port)
                   + ": the rendezvous store cannot listen on")
        != std::string::npos);
}

TEST_CASE("an agent's --env-allow cannot lock out CUDA_VISIBLE_DEVICES") {
  test::become_subreaper();
  agent a{{"--env-allow", "CAFEX_"}};
  // A driver whose environment has nothing else the policy would refuse (the machine's
  // NCCL_*, HF_*, ... would be copied to the workers, and refused: rightly).
  std::vector<std::string> argv{"/usr/bin/env", "-i", "PATH=/usr/bin:/bin"};
  for (const char* keep : {"HOME", "XDG_RUNTIME_DIR", "TMPDIR"})
    if (const char* v = std::getenv(keep))
      argv.push_back(std::string(keep) + "=" + v);
  for (const auto& x : {bin(), std::string("run"), std::string("--nodes"),
                        "127.0.0.1:" + std::to_string(a.port), std::string("--tp"),
                        std::string("2"), std::string("--steps"), std::string("1")})
    argv.push_back(x);
  auto r = test::run_command(argv, 120s);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  // The agent names the driver and logs its normal release of the bundles.
  CHECK(test::wait_until(
    [&] {
      auto log = test::read_file(a.err);
      return log.find("driver on ") != std::string::npos
             && log.find(" released 2 bundle(s) of reservation ") != std::string::npos;
    },
    10s));
}

TEST_CASE("a peer that is not a cafex agent is named as such") {
  listener web{true};
  auto r = run({"--nodes", "127.0.0.1:" + std::to_string(web.port), "--steps", "1",
                "--connect-timeout", "5"},
               60s);
  INFO(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("does not speak the cafex handshake") != std::string::npos);
  CHECK(r.err.find("requires a cluster token") == std::string::npos);
}

TEST_CASE("a token file other users can read is warned about, as ssh does") {
  const std::string path = "/tmp/cafex-operator-token-" + std::to_string(::getpid());
  std::ofstream{path} << "0123456789abcdef0123456789abcdef\n";
  ::chmod(path.c_str(), 0644);
  // The warning comes while the flags are read; the run then fails on the missing agent.
  auto r = run({"--nodes", "127.0.0.1:1", "--token-file", path, "--steps", "1",
                "--connect-timeout", "2"},
               60s);
  CHECK(
    r.err.rfind("warning: token file " + path + " is readable by other users (mode 0644)", 0)
    == 0);
  ::chmod(path.c_str(), 0600);
  auto quiet = run({"--nodes", "127.0.0.1:1", "--token-file", path, "--steps", "1",
                    "--connect-timeout", "2"},
                   60s);
  CHECK(quiet.err.find("warning: token file") == std::string::npos);
  ::unlink(path.c_str());
}

TEST_CASE("a placement the nodes present can never satisfy fails at once and says why") {
  // strict_spread of 2 bundles over the one embedded node; 4 bundles of a whole device
  // each on an embedded node of 2 devices.
  for (auto args : std::vector<std::vector<std::string>>{
         {"--tp", "2", "--strategy", "strict_spread", "--steps", "1"},
         {"--tp", "2", "--bundles", "4", "--devices", "2", "--steps", "1"}}) {
    auto r = run(args, 40s); // the default --placement-timeout is 60 s
    INFO(args[2] << " -> " << r.err);
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("can never hold it: waiting would not help") != std::string::npos);
    CHECK(r.err.find("waiting for") == std::string::npos);
  }
}

TEST_CASE("a cluster config with a key cafex does not know is refused, naming it") {
  const std::string path = "/tmp/cafex-operator-cluster-" + std::to_string(::getpid())
                           + ".json";
  std::ofstream{path} << R"({"nodes": ["127.0.0.1:1"], "tokenfile": "/etc/cafex/token"})";
  auto r = run({"--cluster-config", path, "--steps", "1"}, 60s);
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("error: --cluster-config: cluster config " + path
                      + ": unknown key \"tokenfile\" in the top level; valid keys: nodes, "
                        "driver_ip, token_file",
                    0)
        == 0);
  ::unlink(path.c_str());
}

TEST_CASE("a wait over a second prints progress lines on stderr; --quiet removes them") {
  // A peer that accepts and then says nothing: the driver waits --connect-timeout for it.
  listener silent{false};
  const std::vector<std::string> args{"--nodes",
                                      "127.0.0.1:" + std::to_string(silent.port),
                                      "--steps",
                                      "1",
                                      "--connect-timeout",
                                      "3",
                                      "--json"};
  auto r = run(args, 60s);
  INFO(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.out.empty()); // --json keeps stdout for the result alone
  CHECK(r.err.find("cafex: waiting for the node agent(s) at 127.0.0.1:"
                   + std::to_string(silent.port) + " to answer: ")
        != std::string::npos);
  CHECK(r.err.find(" s so far, deadline in ") != std::string::npos);
  auto quiet_args = args;
  quiet_args.push_back("--quiet");
  auto q = run(quiet_args, 60s);
  INFO(q.err);
  CHECK(q.exit_code != 0);
  CHECK(q.err.find("waiting for") == std::string::npos);
  CHECK(q.err.rfind("error: ", 0) == 0);
}

TEST_CASE("--log-format json: every line on stderr is one JSON object, workers' too") {
  auto r = run({"--tp", "2", "--steps", "2", "--log-level", "info", "--log-format", "json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::set<std::string> roles;
  size_t lines = 0;
  std::istringstream in{r.err};
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(j.is_object(), line);
    for (const char* k : {"time", "role", "pid", "level", "msg"})
      CHECK_MESSAGE(j.contains(k), line);
    roles.insert(j.value("role", ""));
    ++lines;
  }
  CHECK(lines > 2);
  CHECK(roles.count("driver") == 1);
  CHECK(roles.count("worker") == 1);
  auto bad = run({"--log-format", "xml"}, 30s);
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.rfind("error: --log-format: unknown log format 'xml'; use text or json", 0)
        == 0);
}

TEST_CASE("workers that never register: progress lines until the start-up deadline") {
  test::become_subreaper();
  const std::string script = "/tmp/cafex-operator-silent-" + std::to_string(::getpid());
  std::ofstream{script} << "#!/bin/sh\nexec sleep 60\n"; // a worker that never registers
  ::chmod(script.c_str(), 0755);
  {
    agent a{{"--worker-program", script}};
    auto r = run({"--nodes", "127.0.0.1:" + std::to_string(a.port), "--steps", "1",
                  "--start-timeout", "4"},
                 60s);
    INFO(r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("cafex: waiting for the 1 worker(s) to start and register: ")
          != std::string::npos);
  }
  ::unlink(script.c_str());
}
