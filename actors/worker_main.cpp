#include "actors/worker_main.hpp"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/system_config.hpp"
#include "actors/worker_actor.hpp"
#include "chaos/worker_faults.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "runtime/os/fd_passing.hpp"
#include "runtime/os/signals.hpp"
#include "runtime/version.hpp"
#include "transport/caf_link.hpp"

namespace cafex {

namespace {

struct worker_args {
  int agent_fd = -1; ///< inherited socketpair end: the link to the node agent
  int route_fd = -1; ///< inherited channel for drivers' direct connections (-1: none)
  uint64_t spawn_id = 0;
  worker_state st;
  std::string log_level = "info";
  int64_t connect_timeout_ms = 30000;
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
      if (k == "--agent-fd") {
        out.agent_fd = std::stoi(v);
      } else if (k == "--route-fd") {
        out.route_fd = std::stoi(v);
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
  if (out.agent_fd < 0 || fcntl(out.agent_fd, F_GETFD) < 0) {
    err = "--agent-fd N must name the open link its node agent passed";
    return false;
  }
  if (out.route_fd >= 0 && fcntl(out.route_fd, F_GETFD) < 0) {
    err = "--route-fd " + std::to_string(out.route_fd) + " is not open";
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
      std::puts("usage: cafex worker --agent-fd N --spawn-id N --rank N [--route-fd N]\n"
                "       [--bundle-index N] [--node-id ID] [--node-ip IP] [--devices i,j]\n"
                "       [--log-level LEVEL]\n\n"
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
  // The agent serves itself on the socketpair it made for this worker.
  auto agent_ptr = caf_link_connect(sys, args.agent_fd,
                                    std::chrono::milliseconds(args.connect_timeout_ms),
                                    "node agent");
  if (!agent_ptr) {
    spdlog::error("cannot reach the node agent that started this worker: {}",
                  describe(agent_ptr.error()));
    return 1;
  }
  auto agent = caf::actor_cast<node_agent_actor>(std::move(*agent_ptr));
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
                                         agent);
  // A direct route for drivers: without it, driver -> worker messages travel through the
  // node agent's process (see examples/multi_node/README.md, "Routing"). The agent's
  // front door authenticates each driver and passes its connection here.
  std::thread routes;
  if (args.route_fd >= 0) {
    auto whom = caf::actor_cast<caf::strong_actor_ptr>(worker);
    auto sigs = sys.message_types<worker_actor>();
    routes = std::thread([&sys, fd = args.route_fd, whom, sigs] {
      for (int conn; (conn = receive_fd(fd)) >= 0;)
        caf_link_serve(sys, conn, whom, sigs);
    });
  }
  auto stop_routes = [&] {
    if (!routes.joinable())
      return;
    ::shutdown(args.route_fd, SHUT_RDWR);
    routes.join();
    ::close(args.route_fd);
  };
  const uint16_t direct_port = args.route_fd >= 0 ? 1 : 0;
  {
    caf::scoped_actor self{sys};
    bool ok = false;
    self
      ->request(agent, std::chrono::milliseconds(args.connect_timeout_ms),
                register_atom::value, args.spawn_id, std::string(version()), worker,
                direct_port)
      .receive([&](const std::string& node_id) { ok = true; },
               [&](caf::error& e) {
                 spdlog::error("node agent refused this worker: {}", sys.render(e));
               });
    if (!ok) {
      self->send_exit(worker, caf::exit_reason::user_shutdown);
      stop_routes();
      return 1;
    }
  }
  spdlog::debug("worker {} registered with its node agent", args.st.rpc_rank);
  sys.await_all_actors_done();
  stop_routes();
  return 0;
}

} // namespace cafex
