// A SIGKILLed driver leaves nothing in /dev/shm (issue #14, item 11): the driver removes
// its rings' names as soon as every worker has opened them, and rank 0 of each TP group its
// shared-memory collective's name once every rank has mapped it, so the segments live only
// as long as the processes that map them.
#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <dirent.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "processes.hpp"

using namespace std::chrono_literals;

namespace {

/// The /dev/shm entries that a process with `pid` created ("cafex-<pid>-...").
std::vector<std::string> rings_of(pid_t pid) {
  std::vector<std::string> out;
  auto prefix = "cafex-" + std::to_string(pid) + "-";
  if (DIR* d = opendir("/dev/shm")) {
    while (auto* e = readdir(d))
      if (std::string(e->d_name).rfind(prefix, 0) == 0)
        out.push_back(e->d_name);
    closedir(d);
  }
  return out;
}

} // namespace

TEST_CASE("a driver SIGKILLed mid-run on the shared-memory path leaves no /dev/shm file") {
  cafex::test::become_subreaper();
  auto out = "/tmp/cafex-shm-cleanup-" + std::to_string(getpid()) + ".out";
  pid_t driver = cafex::test::start_background({cafex::test::binary_from_env("CAFEX_BIN"),
                                                "run", "--tp", "2", "--pp", "2", "--channel",
                                                "shm", "--device", "cpu", "--steps", "1000000",
                                                "--log-level", "warn"},
                                               out);
  // Steps run: the dataflow is compiled and every worker has its rings open.
  bool running = cafex::test::wait_until(
    [&] { return cafex::test::read_file(out).find("step 1:") != std::string::npos; }, 60s);
  REQUIRE_MESSAGE(running,
                  "cafex run did not reach its steps: " << cafex::test::read_file(out));
  // The workers (the embedded agent's children): their TP groups' segments are named
  // after rank 0's pid ("cafex-<pid>-tp-...").
  auto workers = cafex::test::children_of(driver);
  CHECK(workers.size() == 4);
  REQUIRE(kill(driver, SIGKILL) == 0);
  int st = 0;
  REQUIRE(waitpid(driver, &st, 0) == driver);
  // Its workers follow it (parent-death signal); then nothing may be left.
  CHECK(cafex::test::wait_until(
    [] {
      cafex::test::reap_zombies();
      return cafex::test::children_of(getpid()).empty();
    },
    15s));
  auto left = rings_of(driver);
  for (auto w : workers)
    for (auto& name : rings_of(w))
      left.push_back(name);
  CHECK_MESSAGE(left.empty(), left.size() << " file(s) left in /dev/shm, e.g. "
                                          << (left.empty() ? "" : left.front()));
  // Never leave them behind, even when the check above fails (before the fix).
  for (const auto& name : left)
    unlink(("/dev/shm/" + name).c_str());
  unlink(out.c_str());
}
