// The typed health of a worker: what a cause means for its state and its node, the text
// users read, and the struct surviving CAF serialization (it crosses processes).
#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "runtime/health.hpp"

using namespace cafex;
using kind = failure_cause::kind;

namespace {

failure_cause of(kind k) {
  failure_cause c;
  c.what = k;
  return c;
}

std::string text(const failure_cause& c) {
  return describe_cause(c, std::chrono::milliseconds(2000), "ab12");
}

} // namespace

TEST_CASE("a cause decides the state of a lost worker") {
  CHECK(health_state_of(process_ended(true, SIGKILL)) == health_state::dead);
  CHECK(health_state_of(process_ended(false, 3)) == health_state::dead);
  CHECK(health_state_of(of(kind::unknown)) == health_state::dead);
  CHECK(health_state_of(still_running(true)) == health_state::unresponsive);
  CHECK(health_state_of(of(kind::unreachable)) == health_state::unresponsive);
  CHECK(health_state_of(of(kind::link_dropped)) == health_state::unresponsive);
  CHECK(is_alive(health_state::healthy));
  CHECK(is_alive(health_state::rebuilding));
  CHECK_FALSE(is_alive(health_state::unresponsive));
  CHECK_FALSE(is_alive(health_state::dead));
  CHECK_FALSE(is_alive(health_state::restarting));
}

TEST_CASE("the node is suspect when its agent is lost, or the link said unreachable") {
  CHECK(node_suspect(of(kind::unreachable)));
  auto unknown = of(kind::unknown);
  CHECK_FALSE(node_suspect(unknown));
  unknown.link_unreachable = true;
  CHECK(node_suspect(unknown));
  // The agent said how it ended: the node is fine, whatever the link said.
  auto killed = process_ended(true, SIGKILL);
  killed.link_unreachable = true;
  CHECK_FALSE(node_suspect(killed));
  CHECK_FALSE(node_suspect(still_running(false)));
}

TEST_CASE("causes read as sentences; the text is made from the struct, never parsed") {
  CHECK(text(process_ended(true, SIGKILL)) == "killed by signal 9 (SIGKILL)");
  CHECK(text(process_ended(false, 3)) == "exit code 3");
  CHECK(text(still_running(false)) == "unresponsive: no heartbeat for 2000 ms");
  CHECK(text(still_running(true))
        == "unresponsive: no heartbeat for 2000 ms (the process is stopped: SIGSTOP or a "
           "debugger)");
  CHECK(text(of(kind::unreachable)) == "unreachable: link to node ab12 lost");
  CHECK(text(of(kind::link_dropped)) == "link dropped");
  CHECK(text(of(kind::unknown)) == "connection lost");
  CHECK_FALSE(advice_for(process_ended(true, SIGKILL)).empty());
}

TEST_CASE("health travels as a struct: state and cause survive CAF serialization") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  worker_health in;
  in.rank = 3;
  in.node_id = "ab12";
  in.state = health_state::restarting;
  in.cause = still_running(true);
  in.cause.link_unreachable = true;
  in.detail = "unresponsive";
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE_FALSE(sink(in));
  worker_health out;
  caf::binary_deserializer source{sys, buf};
  REQUIRE_FALSE(source(out));
  CHECK(out.rank == 3);
  CHECK(out.node_id == "ab12");
  CHECK(out.state == health_state::restarting);
  CHECK(out.cause.what == kind::unresponsive);
  CHECK(out.cause.stopped);
  CHECK(out.cause.link_unreachable);
  CHECK(out.detail == "unresponsive");
  // A live worker's default: healthy, nothing lost.
  worker_health fresh;
  CHECK(fresh.state == health_state::healthy);
  CHECK(fresh.cause.what == kind::none);
}

TEST_CASE("state names are the ones cafex-serve exports") {
  std::vector<std::string> names;
  for (auto s : all_health_states)
    names.emplace_back(to_string(s));
  CHECK(names
        == std::vector<std::string>{"healthy", "unresponsive", "dead", "restarting",
                                    "rebuilding"});
}
