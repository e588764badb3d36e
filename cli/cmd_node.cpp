// cafex node: publish a node agent that starts workers on this machine for a driver,
// until SIGTERM or SIGINT (then its workers are stopped and it exits 0).
#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/node_agent_actor.hpp"
#include "actors/system_config.hpp"
#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "runtime/version.hpp"

namespace cafex::cli {

namespace {

std::string self_executable() {
  char buf[4096];
  auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0)
    return "cafex";
  buf[n] = '\0';
  return buf;
}

} // namespace

int node_command(int argc, char** argv) {
  arg_parser p("cafex node",
               "Publishes a node agent: drivers connect to it and it starts one worker "
               "process per bundle on this machine. Serves until SIGTERM or SIGINT.");
  p.flag({{"--listen"}, "ADDR:PORT", "address and port to listen on", "127.0.0.1:0"})
    .flag({{"--devices"}, "N", "logical devices to declare (CPU-only machines)", "1"})
    .flag({{"--host-ip"}, "IP", "the IP this node reports to drivers", "the --listen address"})
    .flag({{"--log-level"}, "LEVEL", "trace, debug, info, warn, error or off", "info"});
  std::string host = "127.0.0.1";
  int port = 0;
  int devices = 1;
  std::string host_ip;
  std::string level;
  try {
    auto a = p.parse(argc, argv, 2);
    if (p.help_requested(a)) {
      std::fputs(p.help().c_str(), stdout);
      return 0;
    }
    auto listen = a.get("--listen", "127.0.0.1:0");
    auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw usage_error{"--listen expects ADDR:PORT, got '" + listen + "'"};
    host = listen.substr(0, colon);
    parsed_args tmp;
    try {
      size_t used = 0;
      port = std::stoi(listen.substr(colon + 1), &used);
      if (used != listen.size() - colon - 1 || port < 0 || port > 65535)
        throw std::invalid_argument("port");
    } catch (const std::exception&) {
      throw usage_error{"--listen: bad port in '" + listen + "'"};
    }
    devices = static_cast<int>(a.get_int("--devices", 1, 1, 4096));
    host_ip = a.get("--host-ip", host);
    level = a.get("--log-level", "info");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    return 2;
  }
  if (auto err = init_logging(level, "node")) {
    std::fprintf(stderr, "error: %s\n", describe(err).c_str());
    return 2;
  }
  // Signals are taken by sigwait below, not by whatever thread they hit.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  system_config cfg;
  caf::actor_system sys{cfg};
  node_agent_options ao;
  ao.info.node_id = make_node_id();
  ao.info.ip = host_ip;
  for (int i = 0; i < devices; ++i)
    ao.info.device_ids.push_back(i);
  ao.info.device_kind = "cpu";
  ao.info.version = version();
  ao.worker_program = self_executable();
  auto agent = sys.spawn(node_agent_impl, ao);
  auto bound = sys.middleman().publish(agent, static_cast<uint16_t>(port), host.c_str());
  if (!bound) {
    std::fprintf(stderr, "error: cannot listen on %s:%d: %s; pick a free port or address\n",
                 host.c_str(), port, sys.render(bound.error()).c_str());
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    return 1;
  }
  {
    caf::scoped_actor self{sys};
    self->send(agent, listen_atom::value, host, *bound);
  }
  spdlog::info("node agent {} listening on {}:{} (ip {}, {} device(s), cafex {})",
               ao.info.node_id, host, *bound, host_ip, devices, version());
  // Tests read the port from this line.
  std::printf("listening %s:%u node_id=%s\n", host.c_str(), *bound, ao.info.node_id.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping workers and exiting", sig);
  {
    caf::scoped_actor self{sys};
    self->request(agent, std::chrono::seconds(10), kill_atom::value)
      .receive([](int32_t) {}, [](caf::error&) {});
  }
  sys.middleman().unpublish(agent);
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  return 0;
}

} // namespace cafex::cli
