// A node agent behind its front door: peers without the token, with a wrong token, or
// with a certificate from another CA are refused before CAF sees a byte, the refusal is
// logged with the peer's address, and the agent keeps serving correct drivers.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <csignal>
#include <fstream>
#include <sys/wait.h>
#include <unistd.h>

#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;

namespace {

struct tls_dir {
  std::string dir;
  tls_dir() {
    char tmpl[] = "/tmp/cafex-sec-XXXXXX";
    dir = mkdtemp(tmpl);
    for (auto ca : {"good", "evil"})
      sh({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
          path(std::string(ca) + "-ca.key"), "-out", path(std::string(ca) + "-ca.pem"),
          "-days", "2", "-subj", std::string("/CN=") + ca + "-ca"});
    leaf("good", "agent");
    leaf("good", "driver");
    leaf("evil", "intruder");
    std::ofstream(path("token")) << "0123456789abcdef0123456789abcdef\n";
    std::ofstream(path("wrong")) << "fedcba9876543210fedcba9876543210\n";
    for (const char* f : {"token", "wrong"}) // a readable token file is warned about
      ::chmod(path(f).c_str(), 0600);
  }
  ~tls_dir() { test::run_command({"/bin/rm", "-rf", dir}); }
  std::string path(const std::string& f) const { return dir + "/" + f; }
  void leaf(const std::string& ca, const std::string& name) {
    sh({"/usr/bin/openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
        path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=" + name});
    sh({"/usr/bin/openssl", "x509", "-req", "-in", path(name + ".csr"), "-CA",
        path(ca + "-ca.pem"), "-CAkey", path(ca + "-ca.key"), "-CAcreateserial", "-out",
        path(name + ".pem"), "-days", "2"});
  }
  static void sh(const std::vector<std::string>& argv) {
    auto r = test::run_command(argv, 30s);
    REQUIRE_MESSAGE(r.exit_code == 0, argv[1] << " failed: " << r.err);
  }
};

struct agent_proc {
  pid_t pid = -1;
  std::string out, err, address;
  agent_proc(const std::string& bin, const tls_dir& t) {
    out = t.path("agent.out");
    err = t.path("agent.err");
    pid = test::start_background({bin, "node", "--listen", "127.0.0.1:0", "--devices", "2",
                                  "--token-file", t.path("token"), "--tls-cert",
                                  t.path("agent.pem"), "--tls-key", t.path("agent.key"),
                                  "--tls-ca", t.path("good-ca.pem")},
                                 out, err);
    REQUIRE(test::wait_until(
      [&] { return test::read_file(out).find("node_id") != std::string::npos; }, 10s));
    auto text = test::read_file(out);
    auto b = text.find("listening ") + 10;
    address = text.substr(b, text.find(' ', b) - b);
  }
  bool alive() const { return kill(pid, 0) == 0; }
  ~agent_proc() {
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
  }
};

} // namespace

TEST_CASE("the front door refuses bad credentials and keeps serving good ones") {
  test::become_subreaper();
  auto bin = test::binary_from_env("CAFEX_BIN");
  tls_dir t;
  agent_proc agent(bin, t);
  auto run = [&](std::vector<std::string> creds) {
    std::vector<std::string> argv{
      bin,       "run", "--nodes", agent.address,       "--tp", "2",
      "--steps", "2",   "--json",  "--connect-timeout", "5",    "--quiet"};
    argv.insert(argv.end(), creds.begin(), creds.end());
    return test::run_command(argv, 60s);
  };
  const std::vector<std::string> good_tls{"--tls-cert", t.path("driver.pem"),
                                          "--tls-key",  t.path("driver.key"),
                                          "--tls-ca",   t.path("good-ca.pem")};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  SUBCASE("refusals") {
    auto no_token = run(good_tls);
    CHECK(no_token.exit_code == 1);
    CHECK(no_token.err.find("refused this driver: wrong or missing cluster token")
          != std::string::npos);
    auto wrong = run(with({"--token-file", t.path("wrong")}, good_tls));
    CHECK(wrong.exit_code == 1);
    CHECK(wrong.err.find("refused this driver") != std::string::npos);
    auto other_ca = run({"--token-file", t.path("token"), "--tls-cert", t.path("intruder.pem"),
                         "--tls-key", t.path("intruder.key"), "--tls-ca",
                         t.path("evil-ca.pem")});
    CHECK(other_ca.exit_code == 1);
    CHECK(other_ca.err.find("TLS") != std::string::npos);
    auto plain = run({});
    CHECK(plain.exit_code == 1);
    CHECK(plain.out.empty());
    for (const auto* r : {&no_token, &wrong, &other_ca, &plain})
      CHECK(r->err.rfind("error: ", 0) == 0);
    auto log = test::read_file(agent.err);
    CHECK(log.find("refused peer 127.0.0.1:") != std::string::npos);
    CHECK(log.find("wrong or missing cluster token") != std::string::npos);
    CHECK(log.find("TLS handshake failed") != std::string::npos);
    CHECK(agent.alive());
  }
  // After (or without) the refusals, right credentials work.
  auto ok = run(with({"--token-file", t.path("token")}, good_tls));
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(agent.alive());
}

TEST_CASE("a TLS-only agent says it checks certificates, not a token") {
  test::become_subreaper();
  auto bin = test::binary_from_env("CAFEX_BIN");
  tls_dir t;
  const auto out = t.path("tls-only.out"), err = t.path("tls-only.err");
  pid_t pid = test::start_background({bin, "node", "--listen", "127.0.0.1:0", "--tls-cert",
                                      t.path("agent.pem"), "--tls-key", t.path("agent.key"),
                                      "--tls-ca", t.path("good-ca.pem")},
                                     out, err);
  CHECK(test::wait_until(
    [&] { return test::read_file(err).find("listening on") != std::string::npos; }, 10s));
  auto log = test::read_file(err);
  CHECK_MESSAGE(log.find("TLS certificate check") != std::string::npos, log);
  CHECK(log.find("token check") == std::string::npos);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
}

TEST_CASE("cafex node refuses a public address without token or TLS") {
  auto bin = test::binary_from_env("CAFEX_BIN");
  auto r = test::run_command({bin, "node", "--listen", "0.0.0.0:0"}, 10s);
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("error: --listen 0.0.0.0:0 is reachable from other hosts", 0) == 0);
  auto tls = test::run_command({bin, "node", "--tls-cert", "/nonexistent.pem"}, 10s);
  CHECK(tls.exit_code == 2);
  CHECK(tls.err.find("--tls-key") != std::string::npos);
  auto tok = test::run_command({bin, "node", "--token-file", "/nonexistent"}, 10s);
  CHECK(tok.exit_code == 2);
  CHECK(tok.err.find("openssl rand -hex 32") != std::string::npos);
}
