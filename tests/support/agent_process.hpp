// `cafex node` on an ephemeral loopback port for a test: started with extra flags, its
// port read from the "listening 127.0.0.1:PORT" line, SIGTERMed (then SIGKILLed) and
// reaped at the end, its output files removed.
#pragma once

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "processes.hpp"

namespace cafex::test {

struct agent_process {
  pid_t pid = -1;
  std::string out;
  std::string err;
  uint16_t port = 0;

  explicit agent_process(const std::vector<std::string>& extra = {},
                         const std::string& tag = "agent") {
    using namespace std::chrono_literals;
    out = "/tmp/cafex-" + tag + "-" + std::to_string(::getpid()) + ".out";
    err = out + ".err";
    std::vector<std::string> argv{
      binary_from_env("CAFEX_BIN"), "node", "--listen", "127.0.0.1:0", "--devices", "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid = start_background(argv, out, err);
    REQUIRE_MESSAGE(
      wait_until(
        [&] { return read_file(out).find("listening 127.0.0.1:") != std::string::npos; }, 20s),
      "agent did not start: " << read_file(err));
    auto text = read_file(out);
    port = static_cast<uint16_t>(std::stoi(text.substr(text.find("127.0.0.1:") + 10)));
  }
  ~agent_process() {
    using namespace std::chrono_literals;
    kill(pid, SIGTERM);
    int st = 0;
    if (!wait_until([&] { return waitpid(pid, &st, WNOHANG) == pid; }, 30s)) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
    }
    ::unlink(out.c_str());
    ::unlink(err.c_str());
  }
  agent_process(const agent_process&) = delete;
  agent_process& operator=(const agent_process&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

} // namespace cafex::test
