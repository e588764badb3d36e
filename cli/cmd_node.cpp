// cafex node: publish a node agent that starts workers on this machine for a driver,
// until SIGTERM or SIGINT (then its workers are stopped and it exits 0).
#include <csignal>
#include <cstdio>
#include <pthread.h>
#include <sys/resource.h>
#include <algorithm>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/node_agent_actor.hpp"
#include "actors/system_config.hpp"
#include "cli/args.hpp"
#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_memory.hpp"
#endif
#include "cli/commands.hpp"
#include "cli/metrics_endpoint.hpp"
#include "runtime/os/child_process.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"
#include "runtime/plan/cluster_spec.hpp"
#include "runtime/version.hpp"
#include "transport/caf_link.hpp"
#include "transport/front_door.hpp"
#include "transport/link_security.hpp"
#include "transport/local_token.hpp"
#include "transport/worker_routes.hpp"

namespace cafex::cli {

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  for (char c : text + ",") {
    if (c == ',') {
      if (!item.empty())
        out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  return out;
}

const char* default_env_allow = "CUDA_VISIBLE_DEVICES,CAFEX_,NCCL_,VLLM_,HF_,HUGGING_FACE_";

} // namespace

int node_command(int argc, char** argv) {
  arg_parser p("cafex node",
               "Publishes a node agent: drivers connect to it and it starts one worker "
               "process per bundle on this machine. Serves until SIGTERM or SIGINT.");
  p.flag({{"--listen"}, "ADDR:PORT", "address and port to listen on", "127.0.0.1:0"})
    .flag({{"--devices"}, "N", "logical devices to declare (CPU-only machines)", "1"})
    .flag({{"--gpus"}, "auto", "declare this machine's GPUs instead of logical devices", ""})
    .flag({{"--host-ip"}, "IP", "the IP this node reports to drivers", "the --listen address"})
    .flag({{"--resource-name"},
           "NAME",
           "what a bundle asks for (e.g. GPU, TPU, a custom name)",
           "GPU"})
    .flag({{"--token-file"},
           "FILE",
           "cluster token: drivers must prove it (HMAC) before anything",
           ""})
    .flag(
      {{"--tls-cert"}, "FILE", "this agent's certificate (PEM); with --tls-key, --tls-ca", ""})
    .flag({{"--tls-key"}, "FILE", "its private key (PEM)", ""})
    .flag({{"--tls-ca"}, "FILE", "CA that signed the drivers' certificates (PEM)", ""})
    .flag({{"--env-allow"},
           "PREFIXES",
           "variables drivers may set on workers ('*': any; CUDA_VISIBLE_DEVICES always)",
           default_env_allow})
    .flag({{"--worker-program"},
           "PATH",
           "program this agent starts as `PATH worker ...` (a host's own worker build, "
           "e.g. with extra models or methods)",
           "this cafex"})
    .flag({{"--log-level"}, "LEVEL", "trace, debug, info, warn, error or off", "info"})
    .flag({{"--log-format"},
           "text|json",
           "log lines as text or one JSON object each (its "
           "workers log the same way)",
           "text"})
    .flag({{"--metrics-listen"},
           "ADDR:PORT",
           "serve Prometheus metrics (devices, reservations, workers, refused peers) on GET "
           "/metrics there",
           "none"});
  std::string host = "127.0.0.1";
  int port = 0;
  int devices = 1;
  bool gpu_kind = false;
  std::string host_ip;
  std::string level;
  std::string resource;
  std::vector<std::string> env_allow;
  link_security sec;
  std::string worker_program;
  std::string metrics_host;
  uint16_t metrics_port = 0;
  bool metrics = false;
  try {
    auto a = p.parse(argc, argv, 2);
    if (p.help_requested(a)) {
      std::fputs(p.help().c_str(), stdout);
      return 0;
    }
    if (!a.positional.empty())
      throw usage_error{"unexpected argument '" + a.positional.front() + "'"};
    if (a.has("--metrics-listen")) {
      metrics = true;
      const auto text = a.get("--metrics-listen");
      const auto colon = text.rfind(':');
      if (colon == std::string::npos || colon == 0)
        throw usage_error{"--metrics-listen expects ADDR:PORT (port 0: any free one), got '"
                          + text + "'"};
      metrics_host = text.substr(0, colon);
      const auto p = text.substr(colon + 1);
      if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos
          || std::stoi(p) > 65535)
        throw usage_error{"--metrics-listen: bad port in '" + text + "'"};
      metrics_port = static_cast<uint16_t>(std::stoi(p));
    }
    auto listen = a.get("--listen", "127.0.0.1:0");
    auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0)
      throw usage_error{"--listen expects ADDR:PORT, got '" + listen + "'"};
    host = listen.substr(0, colon);
    try {
      size_t used = 0;
      port = std::stoi(listen.substr(colon + 1), &used);
      if (used != listen.size() - colon - 1 || port < 0 || port > 65535)
        throw std::invalid_argument("port");
    } catch (const std::exception&) {
      throw usage_error{"--listen: bad port in '" + listen + "'"};
    }
    devices = static_cast<int>(a.get_int("--devices", 1, 1, 4096));
    if (a.has("--gpus")) {
      if (lower_case(a.get("--gpus")) != "auto")
        throw usage_error{"--gpus takes 'auto' (count this machine's GPUs); use --devices N "
                          "for logical devices"};
      if (a.has("--devices"))
        throw usage_error{"give either --devices N or --gpus auto, not both"};
#ifdef CAFEX_HAVE_CUDA
      devices = cuda_device_count();
#else
      devices = -1;
#endif
      if (devices < 0)
        throw usage_error{"--gpus auto needs a build with CUDA; use --devices N"};
      if (devices == 0)
        throw usage_error{"--gpus auto: no GPU is visible on this machine (check the driver "
                          "and CUDA_VISIBLE_DEVICES), or use --devices N"};
      gpu_kind = true;
    }
    host_ip = a.get("--host-ip", host);
    if (!is_ipv4(host_ip))
      throw usage_error{"--host-ip must be an IPv4 address such as 10.0.0.2, got '" + host_ip
                        + "'"};
    level = lower_case(a.get("--log-level", "info"));
    if (auto err = set_log_format(lower_case(a.get("--log-format", "text"))))
      throw usage_error{"--log-format: " + message_of(err)};
    // Chosen on the node, never by a driver: an agent only starts programs its operator named.
    worker_program = a.get("--worker-program", "");
    if (!worker_program.empty() && access(worker_program.c_str(), X_OK) != 0)
      throw usage_error{"--worker-program " + worker_program + " is not an executable file"};
    resource = a.get("--resource-name", "GPU");
    auto allow = a.get("--env-allow", default_env_allow);
    if (allow != "*") {
      env_allow = split(allow);
      // Every driver sets each worker's CUDA_VISIBLE_DEVICES: a list without it would
      // refuse every run, so it is always allowed.
      const std::string device_var = "CUDA_VISIBLE_DEVICES";
      if (std::none_of(env_allow.begin(), env_allow.end(), [&](const std::string& p) {
            return device_var.compare(0, p.size(), p) == 0;
          }))
        env_allow.push_back(device_var);
    }
    if (a.has("--token-file")) {
      if (auto warn = token_file_warning(a.get("--token-file")); !warn.empty())
        std::fprintf(stderr, "warning: %s\n", warn.c_str());
      auto tok = read_token_file(a.get("--token-file"));
      if (!tok)
        throw usage_error{"--token-file: " + message_of(tok.error())};
      sec.token = *tok;
    }
    sec.tls_cert = a.get("--tls-cert");
    sec.tls_key = a.get("--tls-key");
    sec.tls_ca = a.get("--tls-ca");
    if (auto err = check_tls_files(sec))
      throw usage_error{message_of(err)};
    if (!is_loopback_host(host) && !sec.enabled())
      throw usage_error{"--listen " + listen
                        + " is reachable from other hosts, and a node agent starts "
                          "processes on request: give it --token-file FILE (the drivers "
                          "too; make one with: openssl rand -hex 32 > FILE && chmod 600 FILE) "
                          "and/or --tls-cert/--tls-key/--tls-ca"};
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
  // Every listener requires a secret: a loopback agent given none makes one and keeps it
  // where only this user (and so drivers of this user on this host) can read it.
  const bool generated = !sec.enabled();
  if (generated)
    sec.token = make_nonce();
  node_agent_options ao;
  ao.info.node_id = make_node_id();
  ao.info.ip = host_ip;
  for (int i = 0; i < devices; ++i)
    ao.info.device_ids.push_back(i);
  ao.info.device_kind = gpu_kind ? "cuda" : "cpu";
  ao.info.resource_name = resource;
  ao.info.version = version();
  ao.worker_program = worker_program.empty() ? self_executable() : worker_program;
  ao.routes = std::make_shared<worker_routes>();
  ao.env_allow = env_allow;
  ao.require_reservation = true;
  auto routes = ao.routes;
  auto agent = sys.spawn(node_agent_impl, ao);
  auto stop_agent = [&] { caf::anon_send_exit(agent, caf::exit_reason::user_shutdown); };
  // The only port: CAF reads nothing but what the front door hands it after the handshake.
  front_door_options fo;
  fo.listen_host = host;
  fo.listen_port = static_cast<uint16_t>(port);
  fo.security = sec;
  // Connections in their handshake take at most a quarter of the descriptors: a flood
  // never leaves the agent without any for its workers and drivers.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    fo.max_pending = std::max<size_t>(4,
                                      std::min<size_t>(fo.max_pending, nofile.rlim_cur / 4));
    fo.max_pending_per_peer = std::min(fo.max_pending_per_peer, fo.max_pending);
  }
  fo.has_target = [routes](uint16_t t) { return routes->has(t); };
  fo.deliver = [&sys, routes, whom = caf::actor_cast<caf::strong_actor_ptr>(agent),
                ifs = sys.message_types<node_agent_actor>()](int fd, uint16_t target) {
    if (target == 0)
      return caf_link_serve(sys, fd, whom, ifs);
    if (auto err = routes->pass(target, fd))
      spdlog::warn("driver connection for worker route {}: {}", target, describe(err));
  };
  auto door = front_door::start(fo);
  if (!door) {
    std::fprintf(stderr, "error: %s\n", describe(door.error()).c_str());
    stop_agent();
    return 1;
  }
  uint16_t public_port = (*door)->port();
  if (generated) {
    auto path = write_local_token(public_port, sec.token);
    if (!path) {
      std::fprintf(stderr, "error: %s\n", describe(path.error()).c_str());
      (*door)->stop();
      stop_agent();
      return 1;
    }
    spdlog::info("no --token-file: generated a token in {} (drivers of this user on this "
                 "host use it when given no --token-file)",
                 *path);
  }
  spdlog::info("node agent {} listening on {}:{} (ip {}, {} {} device(s), cafex {}, {})",
               ao.info.node_id, host, public_port, host_ip, devices, resource, version(),
               sec.tls() ? (sec.token.empty() ? "TLS certificate check" : "TLS + token check")
               : generated ? "generated token"
                           : "token check");
  std::unique_ptr<metrics_endpoint> metrics_server;
  if (metrics) {
    metrics_endpoint_options mo;
    mo.host = metrics_host;
    mo.port = metrics_port;
    auto* door_ptr = door->get();
    mo.render = [&sys, agent, door_ptr] {
      std::string status;
      caf::scoped_actor self{sys};
      self->request(agent, std::chrono::seconds(2), status_atom::value)
        .receive([&](const std::string& s) { status = s; }, [](caf::error&) {});
      return prometheus_text(status, door_ptr->refused());
    };
    auto m = metrics_endpoint::start(std::move(mo));
    if (!m) {
      std::fprintf(stderr, "error: %s\n", message_of(m.error()).c_str());
      (*door)->stop();
      stop_agent();
      return 1;
    }
    metrics_server = std::move(*m);
  }
  // Tests read the port from this line.
  std::printf("listening %s:%u node_id=%s\n", host.c_str(), public_port,
              ao.info.node_id.c_str());
  if (metrics_server)
    std::printf("metrics %s:%u\n", metrics_host.c_str(), metrics_server->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {}: stopping workers and exiting", sig);
  if (metrics_server)
    metrics_server->stop();
  (*door)->stop();
  if (generated)
    remove_local_token(public_port);
  {
    caf::scoped_actor self{sys};
    self->request(agent, std::chrono::seconds(10), kill_atom::value)
      .receive([](int32_t) {}, [](caf::error&) {});
  }
  stop_agent();
  return 0;
}

} // namespace cafex::cli
