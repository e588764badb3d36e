// Real multi-host runs: three network namespaces wired by a bridge, a token-protected
// node agent with 2 logical devices in each, the driver in the first beside its agent.
// A machine where namespaces cannot be made FAILS these tests (never skips them).
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <tuple>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "netns.hpp"
#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// The pipeline size of the multi-host run: switch to 3 once the dataflow (pp > 1) lands.
constexpr int pipeline_parallel_size = 3;
constexpr int tensor_parallel_size = 2;

struct three_hosts {
  test::netns_hosts hosts{3};
  std::string bin = test::binary_from_env("CAFEX_BIN");
  std::string dir;
  std::string token;
  std::vector<pid_t> agents;
  std::vector<std::string> addrs;

  three_hosts() {
    char tmpl[] = "/tmp/cafex-mn-XXXXXX";
    dir = mkdtemp(tmpl);
    token = dir + "/token";
    std::ofstream(token) << "0123456789abcdef0123456789abcdef\n";
    ::chmod(token.c_str(), 0600); // a readable token file is warned about
    for (int i = 0; i < 3; ++i)
      start_agent(i, hosts.ip(i) + ":7100");
  }

  ~three_hosts() {
    stop_agents();
    hosts.cleanup();
    test::run_command({"/bin/rm", "-rf", dir});
  }

  pid_t start_agent(int host, const std::string& listen, const std::string& tag = "") {
    auto out = dir + "/agent" + std::to_string(host) + tag + ".out";
    auto pid = test::start_background(hosts.exec_in(host, {bin, "node", "--listen", listen,
                                                           "--devices", "2", "--token-file",
                                                           token, "--log-level", "info"}),
                                      out,
                                      dir + "/agent" + std::to_string(host) + tag + ".err");
    hosts.track(pid);
    REQUIRE_MESSAGE(
      test::wait_until(
        [&] { return test::read_file(out).find("listening") != std::string::npos; }, 10s),
      "node agent on host " << host << " did not start: "
                            << test::read_file(dir + "/agent" + std::to_string(host) + tag
                                               + ".err"));
    agents.push_back(pid);
    addrs.push_back(listen);
    return pid;
  }

  std::string nodes() const {
    std::string out;
    for (const auto& a : addrs)
      out += (out.empty() ? "" : ",") + a;
    return out;
  }

  test::command_result drive(std::vector<std::string> extra) {
    std::vector<std::string> argv{bin,   "run",         "--nodes", nodes(), "--token-file",
                                  token, "--log-level", "warn"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return test::run_command(hosts.exec_in(0, argv), 120s);
  }

  void stop_agents() {
    for (auto pid : agents) {
      kill(pid, SIGTERM);
      int status = 0;
      waitpid(pid, &status, 0);
      CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                    "node agent pid " << pid << " did not exit 0 on SIGTERM");
    }
    agents.clear();
  }
};

json parse_run(const test::command_result& r) {
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

} // namespace

TEST_CASE("tp across three hosts: rank order, per-node environment, tokens") {
  test::become_subreaper();
  three_hosts c;
  const int world = tensor_parallel_size * pipeline_parallel_size;
  // spread puts tp=2 on two hosts; with pp=3 the six bundles fill all three.
  auto r = c.drive({"--tp", std::to_string(tensor_parallel_size), "--pp",
                    std::to_string(pipeline_parallel_size), "--strategy", "spread", "--steps",
                    "4", "--seed", "7", "--report-workers", "--json"});
  auto j = parse_run(r);
  const auto& workers = j.at("workers");
  REQUIRE(workers.size() == static_cast<size_t>(world));
  // Rank order: the driver's node first, then nodes with fewer workers, then by IP.
  std::map<std::string, int> per_ip;
  std::map<std::string, std::vector<int>> devices;
  for (const auto& w : workers) {
    per_ip[w.at("node_ip")]++;
    devices[w.at("node_ip")].push_back(w.at("device_ids").at(0));
  }
  CHECK(per_ip.size() >= 2); // it really spans hosts
  auto key = [&](const json& w) {
    std::string ip = w.at("node_ip");
    return std::make_tuple(ip != c.hosts.ip(0), per_ip[ip], ip);
  };
  CHECK(workers[0].at("node_ip") == c.hosts.ip(0));
  std::map<std::string, int> local;
  std::set<int64_t> pids;
  for (size_t r2 = 0; r2 < workers.size(); ++r2) {
    const auto& w = workers[r2];
    INFO("worker " << w.dump());
    CHECK(w.at("rank") == static_cast<int>(r2));
    if (r2 > 0)
      CHECK_FALSE(key(w) < key(workers[r2 - 1]));
    std::string ip = w.at("node_ip");
    CHECK(w.at("local_rank") == local[ip]++);
    auto ids = devices[ip];
    std::sort(ids.begin(), ids.end());
    std::string cvd;
    for (int id : ids)
      cvd += (cvd.empty() ? "" : ",") + std::to_string(id);
    CHECK(w.at("CUDA_VISIBLE_DEVICES") == cvd); // what the worker process itself sees
    pids.insert(w.at("pid").get<int64_t>());
  }
  CHECK(pids.size() == workers.size());
  // The automatic choice per TP group: shared memory when its ranks share a host.
  json want = json::array();
  for (int stage = 0; stage < pipeline_parallel_size; ++stage) {
    std::set<std::string> ips;
    for (int t = 0; t < tensor_parallel_size; ++t)
      ips.insert(workers[static_cast<size_t>(stage * tensor_parallel_size + t)].at("node_ip"));
    want.push_back(ips.size() == 1 ? "shm" : "tcp");
  }
  CHECK(j.at("tp_transport") == want);
  // Tokens equal the single-process (embedded) run.
  auto one = test::run_command({c.bin, "run", "--tp", std::to_string(tensor_parallel_size),
                                "--pp", std::to_string(pipeline_parallel_size), "--steps", "4",
                                "--seed", "7", "--json", "--log-level", "warn"},
                               120s);
  auto single = parse_run(one);
  CHECK(j.at("tokens") == single.at("tokens"));
  // One TP group over the three hosts (spread): the TCP mesh (and Gloo on request), with
  // the same tokens as the same group on one machine (over shared memory).
  auto wide = c.drive({"--tp", "4", "--strategy", "spread", "--steps", "3", "--seed", "7",
                       "--report-workers", "--json"});
  auto jw = parse_run(wide);
  std::set<std::string> wide_ips;
  for (const auto& w : jw.at("workers"))
    wide_ips.insert(w.at("node_ip"));
  CHECK(wide_ips.size() == 3);
  CHECK(jw.at("tp_transport") == json::array({"tcp"}));
  auto wide_gloo = parse_run(c.drive({"--tp", "4", "--strategy", "spread", "--steps", "3",
                                      "--seed", "7", "--tp-transport", "gloo", "--json"}));
  CHECK(wide_gloo.at("tp_transport") == json::array({"gloo"}));
  CHECK(wide_gloo.at("tokens") == jw.at("tokens"));
  auto narrow = parse_run(test::run_command({c.bin, "run", "--tp", "4", "--steps", "3",
                                             "--seed", "7", "--json", "--log-level", "warn"},
                                            120s));
  CHECK(narrow.at("tp_transport") == json::array({"shm"}));
  CHECK(jw.at("tokens") == narrow.at("tokens"));
  // The agents released the placement group: the same run fits again at once.
  auto again = c.drive({"--tp", "2", "--strategy", "spread", "--steps", "1", "--json",
                        "--placement-timeout", "5"});
  CHECK_MESSAGE(again.exit_code == 0, again.err);
  c.stop_agents();
  CHECK(
    test::wait_until([] { return test::processes_matching("--node-ip 10.213.1.").empty(); },
                     10s));
}

TEST_CASE("direct worker routes against routing through the agent (measured)") {
  test::become_subreaper();
  three_hosts c;
  auto base = std::vector<std::string>{"--tp",         "2",       "--strategy",
                                       "spread",       "--steps", "300",
                                       "--num-layers", "0",       "--json"};
  auto direct = parse_run(c.drive(base));
  base.push_back("--no-direct-routes");
  auto via_agent = parse_run(c.drive(base));
  MESSAGE("step p50/p99 us, direct routes: " << direct["step_latency_us"].dump()
                                             << "; through the agent: "
                                             << via_agent["step_latency_us"].dump());
  CHECK(direct.at("tokens") == via_agent.at("tokens"));
}

TEST_CASE("bad clusters are refused with a clear error") {
  test::become_subreaper();
  three_hosts c;
  SUBCASE("two agents with one IP name both node ids") {
    c.start_agent(1, c.hosts.ip(1) + ":7101", "b");
    auto r = c.drive({"--tp", "2", "--json", "--quiet"}); // stderr: the error line alone
    CHECK(r.exit_code != 0);
    CHECK(r.out.empty());
    CHECK(r.err.find("unique IP") != std::string::npos);
    CHECK(r.err.find("error:") == 0);
  }
  SUBCASE("the driver's host must run an agent") {
    auto r = test::run_command(
      c.hosts.exec_in(0, {c.bin, "run", "--nodes", c.addrs[1] + "," + c.addrs[2],
                          "--token-file", c.token, "--tp", "2", "--json"}),
      60s);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("driver's IP 10.213.1.1") != std::string::npos);
  }
  SUBCASE("more devices than the nodes have: the seed's placement error at once") {
    // 8 bundles over 3 agents of 2 devices can never be placed: no wait for resources.
    auto r = c.drive({"--tp", "8", "--placement-timeout", "30", "--json", "--quiet"});
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("Cannot provide a placement group of 8 bundles") != std::string::npos);
    CHECK(r.err.find("can never hold it: waiting would not help") != std::string::npos);
    CHECK(r.err.find("waiting for") == std::string::npos);
  }
  SUBCASE("a wrong token is refused and logged with the peer's address") {
    auto bad = c.dir + "/bad";
    std::ofstream(bad) << "ffffffffffffffffffffffffffffffff\n";
    auto r = test::run_command(c.hosts.exec_in(0, {c.bin, "run", "--nodes", c.nodes(),
                                                   "--token-file", bad, "--json"}),
                               60s);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("refused this driver") != std::string::npos);
    CHECK(test::read_file(c.dir + "/agent0.err").find("refused peer 10.213.1.1:")
          != std::string::npos);
  }
}
