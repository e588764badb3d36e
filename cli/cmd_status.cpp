// cafex status: what each node agent holds, as `ray status` shows a Ray cluster. With the
// credentials of `cafex run` (--token-file, --tls-*), for every agent of --nodes or
// --cluster-config: its node id, IP and version, its devices (free, or reserved: by which
// driver, as which bundle, for how long) and its workers (rank, pid, state, uptime). An
// agent that cannot be reached is listed with why, and the others still are. --json: one
// object on stdout, {"nodes":[...]} (each as agent_status_json, plus "address", or
// {"address","error"}). Exit 0 when every agent answered, 1 when one did not, 2 bad flags.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "actors/cluster/cluster.hpp"
#include "actors/system_config.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/run_flags.hpp"
#include "runtime/logging.hpp"

namespace cafex::cli {

namespace {

arg_parser status_parser() {
  arg_parser p("cafex status",
               "Shows every node agent: node id, IP, version, devices (free or reserved, by "
               "which driver and since when) and workers (rank, pid, state, uptime).");
  p.flag({{"--nodes"}, "HOST:PORT,...", "node agents to ask (what cafex node printed)", ""})
    .flag({{"--cluster-config"}, "FILE", "JSON with \"nodes\" and credentials", ""})
    .flag({{"--token-file"}, "FILE", "cluster token the node agents require", ""})
    .flag({{"--tls-cert"}, "FILE", "driver certificate (PEM); with --tls-key, --tls-ca", ""})
    .flag({{"--tls-key"}, "FILE", "its private key (PEM)", ""})
    .flag({{"--tls-ca"}, "FILE", "CA that signed the agents' certificates (PEM)", ""})
    .flag({{"--connect-timeout"}, "SECONDS", "deadline to reach each node agent", "10"})
    .flag({{"--log-level"}, "LEVEL", "trace, debug, info, warn, error or off", "warn"})
    .flag({{"--log-format"}, "text|json", "log lines as text or one JSON object each", "text"})
    .flag({{"--json"}, "", "print one JSON object instead of a table", ""});
  return p;
}

std::string share(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

void print_table(const std::vector<nlohmann::json>& nodes) {
  for (const auto& n : nodes) {
    if (n.contains("error")) {
      std::printf("node agent %s: unreachable: %s\n\n", n.value("address", "?").c_str(),
                  n.value("error", "").c_str());
      continue;
    }
    std::printf("node %s at %s (ip %s, cafex %s, %zu %s device(s), %s)\n",
                n.value("node_id", "").c_str(), n.value("address", "").c_str(),
                n.value("ip", "").c_str(), n.value("version", "").c_str(), n["devices"].size(),
                n.value("resource", "").c_str(), n.value("device_kind", "").c_str());
    for (const auto& d : n["devices"]) {
      std::printf("  device %d: %s free", d.value("id", -1),
                  share(d.value("free", 0.0)).c_str());
      for (const auto& r : d["reserved"])
        std::printf("; %s reserved by %s (reservation %llu, bundle %d, for %.0f s)",
                    share(r.value("share", 0.0)).c_str(), r.value("driver", "").c_str(),
                    static_cast<unsigned long long>(r.value("reservation", uint64_t{0})),
                    r.value("bundle", -1), r.value("for_s", 0.0));
      std::printf("\n");
    }
    if (n["workers"].empty())
      std::printf("  no workers\n");
    for (const auto& w : n["workers"])
      std::printf("  worker rank %d: pid %lld, %s, up %.0f s, bundle %d%s%s\n",
                  w.value("rank", -1), static_cast<long long>(w.value("pid", int64_t{-1})),
                  w.value("state", "").c_str(), w.value("uptime_s", 0.0),
                  w.value("bundle", -1), w.value("driver", "").empty() ? "" : ", for ",
                  w.value("driver", "").c_str());
    std::printf("\n");
  }
}

} // namespace

int status_command(int argc, char** argv) {
  auto parser = status_parser();
  cluster_options co;
  bool as_json = false;
  std::string level;
  try {
    auto args = parser.parse(argc, argv, 2);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      return 0;
    }
    if (!args.positional.empty())
      throw usage_error{"unexpected argument '" + args.positional.front() + "'; see --help"};
    cluster_flags_from(args, co);
    if (co.nodes.empty())
      throw usage_error{"name the node agents to ask: --nodes HOST:PORT,... or "
                        "--cluster-config FILE"};
    as_json = args.has("--json");
    level = lower_case(args.get("--log-level", "warn"));
    if (auto err = set_log_format(lower_case(args.get("--log-format", "text"))))
      throw usage_error{"--log-format: " + message_of(err)};
  } catch (const usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  if (auto err = init_logging(level, "driver")) {
    std::fprintf(stderr, "error: %s\n", message_of(err).c_str());
    return 2;
  }
  system_config cfg;
  caf::actor_system sys{cfg};
  std::vector<nlohmann::json> nodes;
  {
    cluster c{sys, co};
    const auto deadline = std::chrono::steady_clock::now()
                          + co.connect_timeout * static_cast<int>(co.nodes.size());
    for (const auto& s : c.status(deadline))
      nodes.push_back(nlohmann::json::parse(s));
    c.shutdown();
  }
  bool all = true;
  for (const auto& n : nodes)
    all = all && !n.contains("error");
  if (as_json)
    std::printf("%s\n", nlohmann::json{{"nodes", nodes}}.dump().c_str());
  else
    print_table(nodes);
  return all ? 0 : 1;
}

} // namespace cafex::cli
