#include "actors/worker_main.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/system_config.hpp"
#include "actors/worker_actor.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
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
};

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
  for (int i = first; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::puts("usage: cafex worker --agent HOST:PORT --spawn-id N --rank N [--bundle-index N]\n"
                "       [--node-id ID] [--node-ip IP] [--devices i,j] [--log-level LEVEL]\n\n"
                "Internal: a worker process. Node agents start it; it registers with its\n"
                "agent, serves the driver, and exits when the agent or driver goes away.");
      return 0;
    }
  worker_args args;
  std::string err;
  if (!parse(argc, argv, first, args, err)) {
    std::fprintf(stderr, "error: cafex worker: %s (this command is started by a node agent, "
                         "not by hand)\n", err.c_str());
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
  methods.merge(extra);
  auto worker = sys.spawn<caf::detached>(worker_actor_impl, std::move(args.st), methods, *agent);
  {
    caf::scoped_actor self{sys};
    bool ok = false;
    self->request(*agent, std::chrono::milliseconds(args.connect_timeout_ms), register_atom::value,
                  args.spawn_id, std::string(version()), worker)
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
