// A cafex-serve process for integration tests: started on 127.0.0.1 port 0 (the port is
// read from its "listening on" line), with the embedded default cluster (tp=2) unless the
// extra flags say otherwise; SIGTERMed by terminate(), else killed (with its workers
// reaped) when the test ends.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <regex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "http_client.hpp"
#include "processes.hpp"

namespace cafex::test {

/// A running cafex-serve; killed (with its workers reaped) if a test ends early.
struct service {
  pid_t pid = -1;
  uint16_t port = 0;
  std::string out_file;
  std::string err_file; ///< its log (stderr)
  int exit_status = -1;

  explicit service(std::vector<std::string> extra, bool tp2 = true) {
    become_subreaper();
    out_file = "/tmp/cafex-serve-test-" + std::to_string(getpid()) + ".out";
    err_file = "/tmp/cafex-serve-test-" + std::to_string(getpid()) + ".err";
    std::vector<std::string> argv = {binary_from_env("CAFEX_SERVE"),
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--tp",
                                     tp2 ? "2" : "1",
                                     "--log-level",
                                     "warn",
                                     "--health-interval-ms",
                                     "100"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid = start_background(argv, out_file, err_file);
    std::regex re("listening on 127\\.0\\.0\\.1:([0-9]+)");
    bool up = wait_until(
      [&] {
        std::smatch m;
        auto text = read_file(out_file);
        if (std::regex_search(text, m, re))
          port = static_cast<uint16_t>(std::stoi(m[1]));
        return port != 0 || exited();
      },
      std::chrono::seconds(90));
    REQUIRE_MESSAGE(up, "cafex-serve did not start within 90 s");
    REQUIRE_MESSAGE(port != 0, "cafex-serve exited during start-up");
  }

  bool exited() {
    if (exit_status >= 0)
      return true;
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    return false;
  }

  /// SIGTERM, then the exit status within `timeout` (-1: still running).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    kill(pid, SIGTERM);
    wait_until([&] { return exited(); }, timeout);
    return exit_status;
  }

  ~service() {
    if (!exited()) {
      kill(pid, SIGKILL);
      wait_until([&] { return exited(); }, std::chrono::seconds(10));
    }
    // Workers notice their driver is gone; the subreaper (this process) reaps them.
    wait_until(
      [] {
        reap_zombies();
        return children_of(getpid()).empty();
      },
      std::chrono::seconds(15));
    unlink(out_file.c_str());
    unlink(err_file.c_str());
  }

  serve::http_client
  client(std::chrono::milliseconds timeout = std::chrono::seconds(60)) const {
    return serve::http_client("127.0.0.1", port, timeout);
  }
};

} // namespace cafex::test
