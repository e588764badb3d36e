// cafex chaos SCENARIO: runs one failure-injection scenario (chaos/scenario.hpp,
// examples/failure_injection/README.md) and exits 0 when the outcome matches, 1 when it
// differs, 2 for a bad scenario file or flags.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "chaos/worker_faults.hpp"
#include "cli/args.hpp"
#include "chaos/runner.hpp"
#include "cli/commands.hpp"
#include "chaos/simulated_hosts.hpp"
#include "runtime/os/child_process.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "transport/link_security.hpp"

namespace cafex::cli {

namespace {

arg_parser chaos_parser() {
  arg_parser p("cafex chaos SCENARIO",
               "Runs a failure-injection scenario: starts an executor with the scenario's "
               "cluster, steps a deterministic workload, injects the faults at their step or "
               "time and checks the expected outcome (an error kind within a time bound, or "
               "recovery with the tokens of a run without faults). Exit code: 0 the outcome "
               "matches, 1 it differs, 2 bad scenario or flags. Workers run with "
               "CAFEX_FAULT_INJECTION=1. Format: examples/failure_injection/README.md.");
  p.flag({{"--worker-program"}, "PATH", "worker program (`PATH worker ...`)", "this cafex"})
    .flag({{"--token-file"}, "FILE", "cluster token of the agents in cluster.nodes", ""})
    .flag({{"--json"}, "", "print one JSON report instead of lines", ""})
    .flag({{"--verbose"}, "", "progress on stderr; worker logs at warn", ""});
  return p;
}

int world_devices(const scenario& s) {
  int world = s.tp * s.pp;
  return (world + s.hosts - 1) / s.hosts; // packed in rank order: ranks spread over hosts
}

} // namespace

int chaos_command(int argc, char** argv) {
  auto parser = chaos_parser();
  chaos_options opts;
  bool as_json = false;
  std::string path;
  try {
    auto args = parser.parse(argc, argv, 2);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      return 0;
    }
    if (args.positional.size() != 1)
      throw usage_error{args.positional.empty()
                          ? "cafex chaos needs a scenario file: cafex chaos SCENARIO.json "
                            "(examples in tests/scenarios/)"
                          : "cafex chaos runs one scenario; got "
                              + std::to_string(args.positional.size())
                              + " arguments (run several with "
                                "examples/failure_injection/run_all.sh)"};
    path = args.positional.front();
    opts.worker_program = args.get("--worker-program");
    opts.verbose = args.has("--verbose");
    if (args.has("--token-file")) {
      if (auto warn = token_file_warning(args.get("--token-file")); !warn.empty())
        std::fprintf(stderr, "warning: %s\n", warn.c_str());
      auto tok = read_token_file(args.get("--token-file"));
      if (!tok)
        throw usage_error{"--token-file: " + message_of(tok.error())};
      opts.cluster.security.token = *tok;
    }
    as_json = args.has("--json");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  auto s = load_scenario(path);
  if (!s) {
    std::fprintf(stderr, "error: %s\n", describe(s.error()).c_str());
    return 2;
  }
  if (!s->nodes.empty())
    std::fprintf(stderr, "note: cluster.nodes: the fault methods and test models exist only "
                         "where the agent runs with CAFEX_FAULT_INJECTION=1 "
                         "(CAFEX_FAULT_INJECTION=1 cafex node ...)\n");
  if (s->hosts > 0 && opts.cluster.security.enabled()) {
    std::fprintf(stderr,
                 "error: %s: --token-file applies to cluster.nodes; simulated hosts "
                 "make their own token\n",
                 path.c_str());
    return 2;
  }
  // Workers inherit it from their node agent; the embedded agent and the simulated
  // hosts' agents inherit it from this process. No other thread runs yet: MT-unsafe
  // setenv is fine here.
  setenv(fault_injection_env, "1", 1); // NOLINT(concurrency-mt-unsafe)
  std::unique_ptr<simulated_hosts> hosts;
  if (s->hosts > 0) {
    // Before any thread starts: this process moves into the driver's namespace.
    auto h = simulated_hosts::start(s->hosts, world_devices(*s), self_executable());
    if (!h) {
      std::fprintf(stderr, "error: %s: %s\n", path.c_str(), describe(h.error()).c_str());
      return code_of(h.error()) == errc::invalid_config ? 2 : 1;
    }
    hosts = std::move(*h);
    opts.cluster = hosts->cluster();
    opts.hosts = hosts.get();
  } else if (!s->nodes.empty()) {
    opts.cluster.nodes = s->nodes;
  } else if (opts.cluster.security.enabled()) {
    std::fprintf(stderr,
                 "error: %s: --token-file applies to cluster.nodes, and the scenario "
                 "has none (it runs an embedded node agent)\n",
                 path.c_str());
    return 2;
  }
  if (auto err = init_logging(opts.verbose ? "warn" : "off", "driver")) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 2;
  }
  auto report = chaos_runner(*s, opts).run();
  if (report.name.empty())
    report.name = path;
  if (as_json)
    std::printf("%s\n", report.to_json().dump().c_str());
  else
    std::fputs(report.to_text().c_str(), stdout);
  return report.pass ? 0 : 1;
}

} // namespace cafex::cli
