#include "actors/worker_main.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/system_config.hpp"
#include "actors/worker_actor.hpp"
#include "chaos/worker_faults.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "runtime/os/signals.hpp"
#include "runtime/version.hpp"

namespace cafex {

namespace {

struct worker_args {
  std::string agent_host = "127.0.0.1";
  uint16_t agent_port = 0;
  uint64_t spawn_id = 0;
  worker_state st;
  std::string log_level = "info";
  int64_t connect_timeout_ms = 30000;
  std::string publish_host;           ///< publish for a direct driver connection
  std::vector<std::string> env_allow; ///< the node's policy: allowed variable prefixes
};

std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= v.size()) {
    auto comma = v.find(',', pos);
    auto item = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!item.empty())
      out.push_back(item);
    if (comma == std::string::npos)
      break;
    pos = comma + 1;
  }
  return out;
}

/// The node's environment policy: update_environment_variables may only set variables
/// whose names start with an allowed prefix; others are refused with their names.
void bound_environment(method_table& methods, const std::vector<std::string>& allow) {
  if (allow.empty())
    return;
  auto inner = *methods.find("update_environment_variables");
  methods.add("update_environment_variables",
              [inner, allow](worker_state& st, const json& args) -> caf::expected<json> {
                // Per-rank lists were resolved by the driver: args is one object here,
                // or a list of objects indexed by rank.
                std::string refused;
                auto check = [&](const json& env) {
                  if (!env.is_object())
                    return;
                  for (auto it = env.begin(); it != env.end(); ++it) {
                    bool ok = false;
                    for (const auto& p : allow)
                      ok = ok || it.key().compare(0, p.size(), p) == 0;
                    if (!ok)
                      refused += (refused.empty() ? "" : ", ") + it.key();
                  }
                };
                if (args.is_array()) {
                  if (st.rpc_rank >= 0 && static_cast<size_t>(st.rpc_rank) < args.size())
                    check(args[static_cast<size_t>(st.rpc_rank)]);
                } else
                  check(args);
                if (!refused.empty())
                  return make_error(errc::unauthorized,
                                    "node " + st.node_id + " does not let drivers set "
                                      + refused + "; its policy allows names starting with "
                                      + nlohmann::json(allow).dump()
                                      + " (cafex node --env-allow)");
                return inner(st, args);
              });
}

bool parse(int argc, char** argv, int first, worker_args& out, std::string& err) {
  for (int i = first; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) {
      err = k + " needs a value";
      return false;
    }
    std::string v = argv[++i];
    try {
      if (k == "--agent") {
        auto colon = v.rfind(':');
        if (colon == std::string::npos)
          throw std::invalid_argument("--agent expects HOST:PORT");
        out.agent_host = v.substr(0, colon);
        out.agent_port = static_cast<uint16_t>(std::stoi(v.substr(colon + 1)));
      } else if (k == "--spawn-id") {
        out.spawn_id = std::stoull(v);
      } else if (k == "--rank") {
        out.st.rpc_rank = std::stoi(v);
      } else if (k == "--bundle-index") {
        out.st.bundle_index = std::stoi(v);
      } else if (k == "--node-id") {
        out.st.node_id = v;
      } else if (k == "--node-ip") {
        out.st.node_ip = v;
      } else if (k == "--devices") {
        size_t pos = 0;
        while (pos < v.size()) {
          auto comma = v.find(',', pos);
          out.st.device_ids.push_back(std::stoi(v.substr(pos, comma - pos)));
          pos = comma == std::string::npos ? v.size() : comma + 1;
        }
      } else if (k == "--log-level") {
        out.log_level = v;
      } else if (k == "--publish") {
        out.publish_host = v;
      } else if (k == "--env-allow") {
        out.env_allow = split_commas(v);
      } else if (k == "--connect-timeout-ms") {
        out.connect_timeout_ms = std::stoll(v);
      } else {
        err = "unknown flag " + k;
        return false;
      }
    } catch (const std::exception&) {
      err = "bad value '" + v + "' for " + k;
      return false;
    }
  }
  if (out.agent_port == 0) {
    err = "--agent HOST:PORT is required";
    return false;
  }
  return true;
}

} // namespace

int worker_main(int argc, char** argv, int first, const method_table& extra) {
  // A TP peer SIGKILLed mid-collective must fail Gloo's write with EPIPE (a lost peer),
  // not kill this worker too.
  ignore_sigpipe();
  for (int i = first; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::puts(
        "usage: cafex worker --agent HOST:PORT --spawn-id N --rank N [--bundle-index N]\n"
        "       [--node-id ID] [--node-ip IP] [--devices i,j] [--log-level LEVEL]\n\n"
        "Internal: a worker process. Node agents start it; it registers with its\n"
        "agent, serves the driver, and exits when the agent or driver goes away.");
      return 0;
    }
  worker_args args;
  std::string err;
  if (!parse(argc, argv, first, args, err)) {
    std::fprintf(stderr,
                 "error: cafex worker: %s (this command is started by a node agent, "
                 "not by hand)\n",
                 err.c_str());
    return 2;
  }
  if (auto e = init_logging(args.log_level, "worker"); e) {
    std::fprintf(stderr, "error: %s\n", describe(e).c_str());
    return 2;
  }
  system_config cfg;
  caf::actor_system sys{cfg};
  auto& mm = sys.middleman();
  // The agent normally answers at once; heartbeats bound the connect against a stopped
  // agent, and a few retries cover an agent still binding.
  auto agent = mm.remote_actor<node_agent_actor>(args.agent_host, args.agent_port);
  if (!agent) {
    spdlog::error("cannot reach node agent at {}:{}: {}", args.agent_host, args.agent_port,
                  sys.render(agent.error()));
    return 1;
  }
  auto methods = method_table::builtins();
  // Failure injection (`cafex chaos`) only when asked for: the one place the worker reads
  // this variable, inherited from its node agent.
  if (fault_injection_enabled(std::getenv(fault_injection_env))) {
    methods.merge(fault_methods());
    register_fault_models();
    spdlog::info("fault injection is on ({}=1): fault.* methods and test models registered",
                 fault_injection_env);
  }
  methods.merge(extra);
  bound_environment(methods, args.env_allow);
  // What this process itself sees, for multi-node checks (cafex run --report-workers).
  methods.add("process_info", [](worker_state& st, const json&) -> caf::expected<json> {
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    return json{{"pid", static_cast<int64_t>(getpid())},
                {"rank", st.rank},
                {"local_rank", st.local_rank},
                {"node_id", st.node_id},
                {"node_ip", st.node_ip},
                {"device_ids", st.device_ids},
                {"CUDA_VISIBLE_DEVICES", cvd ? cvd : ""}};
  });
  auto worker = sys.spawn<caf::detached>(worker_actor_impl, std::move(args.st), methods,
                                         *agent);
  // A direct route for the driver: without it, driver -> worker messages travel through
  // the node agent's process (see examples/multi_node/README.md, "Routing").
  uint16_t direct_port = 0;
  if (!args.publish_host.empty()) {
    auto port = mm.publish(worker, 0, args.publish_host.c_str());
    if (!port) {
      spdlog::error("cannot publish the worker on {}: {}", args.publish_host,
                    sys.render(port.error()));
      caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
      return 1;
    }
    direct_port = *port;
  }
  {
    caf::scoped_actor self{sys};
    bool ok = false;
    self
      ->request(*agent, std::chrono::milliseconds(args.connect_timeout_ms),
                register_atom::value, args.spawn_id, std::string(version()), worker,
                direct_port)
      .receive([&](const std::string& node_id) { ok = true; },
               [&](caf::error& e) {
                 spdlog::error("node agent refused this worker: {}", sys.render(e));
               });
    if (!ok) {
      self->send_exit(worker, caf::exit_reason::user_shutdown);
      return 1;
    }
  }
  spdlog::debug("worker {} registered with node agent {}:{}", args.st.rpc_rank,
                args.agent_host, args.agent_port);
  sys.await_all_actors_done();
  return 0;
}

} // namespace cafex
