// Losing a whole node: its agent SIGKILLed, SIGSTOPped or stopped cleanly, or its link
// cut. Two network namespace hosts each run `cafex node` (starting the test worker, for
// the sleepy model); this test process joins the first host's namespace and drives a
// tp=2 executor spread over both. Every wait has a deadline; nothing sleeps as
// synchronisation. Needs root (CI runs as root); a machine where namespaces cannot be
// made FAILS these tests.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cafex/executor.hpp"
#include "netns.hpp"
#include "executor_fixture.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

long ms_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count();
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Moves the calling thread into a named network namespace, and back on destruction.
/// Threads it creates meanwhile (the executor's CAF threads) stay in that namespace.
class in_netns {
public:
  explicit in_netns(const std::string& name) {
    home_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE_MESSAGE((home_ >= 0 && fd >= 0 && setns(fd, CLONE_NEWNET) == 0),
                    "cannot enter network namespace " << name << " (needs root)");
    close(fd);
  }
  ~in_netns() {
    setns(home_, CLONE_NEWNET);
    close(home_);
  }
  in_netns(const in_netns&) = delete;
  in_netns& operator=(const in_netns&) = delete;

private:
  int home_ = -1;
};

/// Namespace hosts (two by default), a token-protected `cafex node` with one device in
/// each that starts the test worker. The driver's direct routes reach the workers
/// themselves: the agent's front door authenticates the driver and passes the connection
/// to the worker process.
struct node_hosts {
  int n;
  test::netns_hosts hosts{n};
  std::string bin = test::binary_from_env("CAFEX_BIN");
  std::string worker = test::binary_from_env("CAFEX_TEST_WORKER");
  std::string dir;
  std::string token;
  std::vector<pid_t> agents;

  explicit node_hosts(int count = 2) : n(count) {
    char tmpl[] = "/tmp/cafex-nf-XXXXXX";
    dir = mkdtemp(tmpl);
    token = dir + "/token";
    std::ofstream(token) << "0123456789abcdef0123456789abcdef\n";
    ::chmod(token.c_str(), 0600); // a readable token file is warned about
    for (int i = 0; i < n; ++i)
      start_agent(i);
  }

  ~node_hosts() {
    stop_agents();
    hosts.cleanup();
    test::run_command({"/bin/rm", "-rf", dir});
  }

  void start_agent(int host) {
    auto out = dir + "/agent" + std::to_string(host) + ".out";
    auto err = dir + "/agent" + std::to_string(host) + ".err";
    auto argv = hosts.exec_in(host,
                              {bin, "node", "--listen", hosts.ip(host) + ":7100", "--devices",
                               "1", "--worker-program", worker, "--log-level", "debug"});
    argv.push_back("--token-file");
    argv.push_back(token);
    auto pid = test::start_background(argv, out, err);
    hosts.track(pid);
    REQUIRE_MESSAGE(test::wait_until([&] { return has(test::read_file(out), "listening"); },
                                     10s),
                    "node agent on host " << host
                                          << " did not start: " << test::read_file(err));
    agents.push_back(pid);
  }

  executor_options options() const {
    executor_options o;
    o.parallel.tensor_parallel_size = 2;
    o.model.name = "sleepy";
    o.log_level = "warn";
    o.worker_program = worker;
    for (int i = 0; i < n; ++i)
      o.cluster.nodes.push_back(hosts.ip(i) + ":7100");
    o.cluster.security.token = "0123456789abcdef0123456789abcdef";
    return o;
  }

  /// `ip link set pN down|up` on the switch side of host i's cable.
  void set_link(int host, bool up) {
    auto r = test::run_command({"/usr/sbin/ip", "-n", "cfx" + std::to_string(getpid()) + "sw",
                                "link", "set", "p" + std::to_string(host + 1),
                                up ? "up" : "down"},
                               10s);
    REQUIRE_MESSAGE(r.exit_code == 0, "ip link set failed: " << r.err);
  }

  void stop_agents() {
    for (auto pid : agents)
      if (pid > 0 && kill(pid, SIGTERM) == 0) {
        kill(pid, SIGCONT); // a stopped agent takes its SIGTERM once continued
        waitpid(pid, nullptr, 0);
      }
    agents.clear();
  }
};

/// What the test knows of one worker: its rank, host and process.
struct worker_seen {
  int rank = -1;
  std::string node_id;
  pid_t pid = -1;
};

/// The worker placed on `ip` (process_info answers pid, rank and node per rank).
worker_seen worker_on(executor& ex, const std::string& ip) {
  auto info = ex.collective_rpc("process_info");
  REQUIRE_MESSAGE(info, describe(info.error()));
  worker_seen w;
  for (const auto& j : *info)
    if (j.at("node_ip") == ip) {
      w.rank = j.at("rank");
      w.node_id = j.at("node_id");
      w.pid = static_cast<pid_t>(j.at("pid").get<int64_t>());
    }
  REQUIRE_MESSAGE(w.rank >= 0, "no worker runs on " << ip);
  return w;
}

bool alive(pid_t pid) {
  test::reap_zombies(); // this process is the subreaper: orphans end up as our zombies
  return kill(pid, 0) == 0;
}

/// The failure of a lost node as the caller sees it: the pending step, health, state,
/// and a later step that fails at once.
void check_reported(executor& ex, std::future<caf::expected<model_runner_output>>& pending,
                    const worker_seen& lost, steady::time_point t0,
                    std::chrono::milliseconds bound, const char* what) {
  REQUIRE_MESSAGE(pending.wait_for(bound) == std::future_status::ready,
                  std::string(what)
                    << ": the pending step did not fail within " << bound.count() << " ms");
  auto took = ms_since(t0);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  auto text = describe(r.error());
  CHECK_MESSAGE((code_of(r.error()) == errc::worker_lost
                 || code_of(r.error()) == errc::node_lost),
                text);
  CHECK_MESSAGE(has(text, "rank " + std::to_string(lost.rank)), text);
  CHECK_MESSAGE(has(text, lost.node_id), text);
  CHECK_MESSAGE((has(text, "unreachable") || has(text, "unresponsive")), text);
  MESSAGE(std::string(what) << ": the step failed " << took << " ms after the fault (bound "
                            << bound.count() << " ms): " << text);
  auto health = ex.check_health();
  REQUIRE(health);
  auto st = health->at(static_cast<size_t>(lost.rank)).state;
  CHECK_MESSAGE((st == health_state::dead || st == health_state::unresponsive), to_string(st));
  CHECK(health->at(static_cast<size_t>(1 - lost.rank)).state == health_state::healthy);
  auto s = ex.state();
  CHECK_MESSAGE((s == executor_state::failed || s == executor_state::degraded), to_string(s));
  auto t1 = steady::now();
  auto later = ex.execute_model_async(test::sleepy_step(100, 0));
  REQUIRE(later.wait_for(2s) == std::future_status::ready);
  auto again = later.get();
  REQUIRE_FALSE(again);
  CHECK(code_of(again.error()) == errc::worker_lost);
  CHECK_MESSAGE(has(describe(again.error()), "rank " + std::to_string(lost.rank)),
                describe(again.error()));
  CHECK(ms_since(t1) < 1000);
}

/// After shutdown: no worker of either host is left (the agents still running keep none).
void no_workers_left() {
  CHECK(test::wait_until(
    [&] {
      test::reap_zombies();
      return test::processes_matching("--node-ip 10.213.1.").empty();
    },
    15s));
}

} // namespace

TEST_CASE("a node agent SIGKILLed mid-step: typed error naming rank, node and cause") {
  test::become_subreaper();
  node_hosts c;
  in_netns driver_host(c.hosts.ns(0));
  auto o = c.options();
  auto started = executor::start(o);
  REQUIRE_MESSAGE(started, describe(started.error()));
  auto& ex = **started;
  auto lost = worker_on(ex, c.hosts.ip(1));
  REQUIRE(alive(lost.pid));
  REQUIRE(ex.execute_model(test::sleepy_step(0, 0))); // compiles the dataflow
  auto pending = ex.execute_model_async(test::sleepy_step(1, 20000));
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(c.agents[1], SIGKILL) == 0);
  // The agent's links drop at once, and the driver never waits for a lost agent's answer
  // (that wait alone is cause_timeout): well under cause_timeout.
  auto bound = o.liveness.cause_timeout;
  check_reported(ex, pending, lost, t0, bound, "agent SIGKILL");
  waitpid(c.agents[1], nullptr, 0);
  c.agents[1] = -1;
  // The killed agent's worker dies with it (PR_SET_PDEATHSIG), not at shutdown.
  CHECK_MESSAGE(test::wait_until([&] { return !alive(lost.pid); }, 5s),
                "worker pid " << lost.pid << " outlived its agent");
  auto t1 = steady::now();
  ex.shutdown();
  MESSAGE("shutdown with one node lost took " << ms_since(t1) << " ms");
  CHECK(ex.state() == executor_state::stopped);
  no_workers_left();
}

TEST_CASE("one node's link cut mid-step: reported unreachable within the heartbeat bounds") {
  test::become_subreaper();
  node_hosts c;
  in_netns driver_host(c.hosts.ns(0));
  auto o = c.options();
  o.liveness.heartbeat_interval = 200ms;
  o.liveness.connection_timeout = 1000ms;
  o.liveness.cause_timeout = 300ms;
  auto started = executor::start(o);
  REQUIRE_MESSAGE(started, describe(started.error()));
  auto& ex = **started;
  auto lost = worker_on(ex, c.hosts.ip(1));
  REQUIRE(ex.execute_model(test::sleepy_step(0, 0)));
  auto pending = ex.execute_model_async(test::sleepy_step(1, 20000));
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = steady::now();
  c.set_link(1, false);
  // Silence is noticed after connection_timeout (checked every heartbeat); the agent
  // behind the cut is lost too, so nobody waits for its answer; 500 ms margin.
  auto bound = o.liveness.connection_timeout + o.liveness.heartbeat_interval + 500ms;
  check_reported(ex, pending, lost, t0, bound, "link cut");
  // Behind the cut, the agent loses the driver after its own connection timeout (2 s by
  // default) and stops that driver's worker: nothing waits for the link to come back.
  CHECK_MESSAGE(test::wait_until([&] { return !alive(lost.pid); }, 10s),
                "worker pid " << lost.pid << " outlived its driver's link; agent log:\n"
                              << test::read_file(c.dir + "/agent1.err"));
  MESSAGE("the worker behind the cut exited " << ms_since(t0) << " ms after the cut");
  c.set_link(1, true);
  auto t1 = steady::now();
  ex.shutdown();
  MESSAGE("shutdown with one node cut off took " << ms_since(t1) << " ms");
  no_workers_left();
}

TEST_CASE("a node agent SIGSTOPped mid-step: its node is reported lost within the liveness "
          "bounds") {
  test::become_subreaper();
  // The driver's direct route is the worker's own connection (the front door passed it
  // over), so the worker keeps answering while its agent is silent.
  node_hosts c(2);
  in_netns driver_host(c.hosts.ns(0));
  auto o = c.options();
  o.liveness.heartbeat_interval = 200ms;
  o.liveness.connection_timeout = 1000ms;
  o.liveness.cause_timeout = 300ms;
  auto started = executor::start(o);
  REQUIRE_MESSAGE(started, describe(started.error()));
  auto& ex = **started;
  auto lost = worker_on(ex, c.hosts.ip(1));
  REQUIRE(ex.execute_model(test::sleepy_step(0, 0)));
  auto pending = ex.execute_model_async(test::sleepy_step(1, 20000));
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(c.agents[1], SIGSTOP) == 0);
  // The stopped agent's worker still runs and still answers the driver; the agent is
  // silent. The driver's own liveness must find the node lost: after its
  // connection_timeout (checked every heartbeat), not once the worker gives up on its
  // agent after its own connection timeout (2 s, the default). 500 ms margin, as for a
  // cut link.
  auto bound = o.liveness.connection_timeout + o.liveness.heartbeat_interval + 500ms;
  check_reported(ex, pending, lost, t0, bound, "agent SIGSTOP");
  REQUIRE(kill(c.agents[1], SIGCONT) == 0);
  auto t1 = steady::now();
  ex.shutdown();
  MESSAGE("shutdown with one node's agent stopped and continued took " << ms_since(t1)
                                                                       << " ms");
  no_workers_left();
}

TEST_CASE("a node agent stopped cleanly (SIGTERM) mid-step: its node's rank fails fast") {
  test::become_subreaper();
  node_hosts c;
  in_netns driver_host(c.hosts.ns(0));
  auto o = c.options();
  auto started = executor::start(o);
  REQUIRE_MESSAGE(started, describe(started.error()));
  auto& ex = **started;
  auto lost = worker_on(ex, c.hosts.ip(1));
  REQUIRE(ex.execute_model(test::sleepy_step(0, 0)));
  auto pending = ex.execute_model_async(test::sleepy_step(1, 20000));
  REQUIRE(pending.wait_for(200ms) == std::future_status::timeout);
  auto t0 = steady::now();
  REQUIRE(kill(c.agents[1], SIGTERM) == 0);
  // The agent stops its worker and exits: both links drop at once.
  auto bound = o.liveness.cause_timeout + 1000ms;
  REQUIRE_MESSAGE(pending.wait_for(bound) == std::future_status::ready,
                  "the pending step did not fail within " << bound.count() << " ms");
  auto r = pending.get();
  REQUIRE_FALSE(r);
  auto text = describe(r.error());
  CHECK_MESSAGE(code_of(r.error()) == errc::worker_lost, text);
  CHECK_MESSAGE(has(text, "rank " + std::to_string(lost.rank)), text);
  MESSAGE("agent SIGTERM: the step failed " << ms_since(t0) << " ms after it: " << text);
  int status = 0;
  REQUIRE(waitpid(c.agents[1], &status, 0) == c.agents[1]);
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "agent status " << status);
  c.agents[1] = -1;
  CHECK(test::wait_until([&] { return !alive(lost.pid); }, 5s));
  ex.shutdown();
  no_workers_left();
}

TEST_CASE("restart policy: a rank whose node agent is SIGKILLed moves to a free node") {
  test::become_subreaper();
  node_hosts c(3);
  in_netns driver_host(c.hosts.ns(0));
  auto o = c.options();
  o.on_worker_failure = failure_policy::restart;
  // Recovery first probes the lost node's agent (200 ms when the driver already saw it
  // unreachable, else up to 2 s), bounded by connect_timeout.
  o.cluster.connect_timeout = 3s;
  auto started = executor::start(o);
  REQUIRE_MESSAGE(started, describe(started.error()));
  auto& ex = **started;
  // tp=2 on three one-device hosts: the driver's host, one other, and a spare.
  auto info = ex.collective_rpc("process_info");
  REQUIRE(info);
  int victim_host = 1;
  for (const auto& j : *info)
    if (j.at("node_ip") == c.hosts.ip(2))
      victim_host = 2;
  int spare_host = 3 - victim_host;
  auto lost = worker_on(ex, c.hosts.ip(victim_host));
  REQUIRE(ex.execute_model(test::sleepy_step(0, 0)));
  auto pending = ex.execute_model_async(test::sleepy_step(1, 100));
  // The step is running before the kill (else, on a loaded machine, it could reach the
  // driver after the loss and be refused as "recovering" instead).
  REQUIRE(test::wait_until(
    [&] {
      auto stats = ex.dataflow_stats();
      return stats && (*stats)["in_flight"].get<int>() == 1;
    },
    5s));
  auto t0 = steady::now();
  REQUIRE(kill(c.agents[static_cast<size_t>(victim_host)], SIGKILL) == 0);
  REQUIRE(pending.wait_for(o.liveness.cause_timeout) == std::future_status::ready);
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK_MESSAGE(code_of(r.error()) == errc::worker_lost, describe(r.error()));
  auto bound = o.cluster.connect_timeout + 10s;
  CHECK_MESSAGE(test::wait_until([&] { return ex.state() == executor_state::ready; }, bound),
                "not ready again within " << bound.count()
                                          << " ms: " << to_string(ex.state()));
  auto ready_ms = ms_since(t0);
  auto moved = worker_on(ex, c.hosts.ip(spare_host));
  CHECK(moved.rank == lost.rank);
  auto good = ex.execute_model(test::sleepy_step(2, 0));
  CHECK_MESSAGE(good, (good ? "" : describe(good.error())));
  MESSAGE("agent SIGKILL -> rank " << lost.rank << " moved to host " << spare_host
                                   << " and ready again in " << ready_ms << " ms");
  waitpid(c.agents[static_cast<size_t>(victim_host)], nullptr, 0);
  c.agents[static_cast<size_t>(victim_host)] = -1;
  ex.shutdown();
  no_workers_left();
}
