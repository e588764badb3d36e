#include "actors/cluster/cluster.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cmath>
#include <fstream>
#include <map>
#include <netdb.h>
#include <set>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/dummy_driver_actor.hpp"
#include "actors/cluster/cluster_impl.hpp"
#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "runtime/plan/rank_plan.hpp"
#include "runtime/version.hpp"
#include "transport/caf_link.hpp"
#include "transport/dialer.hpp"
#include "runtime/plan/cluster_spec.hpp"
#include "transport/local_token.hpp"

namespace cafex {

namespace {} // namespace

caf::error parse_host_port(const std::string& text, const std::string& what, std::string& host,
                           uint16_t& port) {
  auto colon = text.rfind(':');
  auto bad = [&] {
    return make_error(errc::invalid_argument,
                      what + " expects HOST:PORT (e.g. 10.0.0.2:7100), got '" + text + "'");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return bad();
  host = text.substr(0, colon);
  char* end = nullptr;
  long p = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 1 || p > 65535)
    return bad();
  port = static_cast<uint16_t>(p);
  return caf::none;
}

caf::error load_cluster_config(const std::string& path, cluster_options& into) {
  std::ifstream in(path);
  if (!in)
    return make_error(errc::invalid_config, "cannot read cluster config " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return make_error(errc::invalid_config,
                      "cluster config " + path + " is not JSON: " + e.what());
  }
  auto bad = [&](const std::string& why) {
    return make_error(errc::invalid_config, "cluster config " + path + ": " + why);
  };
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array() || j["nodes"].empty())
    return bad("needs \"nodes\": a non-empty list of \"HOST:PORT\" node agent addresses");
  const auto known = {"nodes", "driver_ip", "token_file", "tls_cert", "tls_key", "tls_ca"};
  if (auto k = first_unknown_key(j, known); !k.empty())
    return bad(unknown_key_message(k, "the top level", known));
  std::vector<std::string> nodes;
  for (const auto& n : j["nodes"]) {
    std::string addr;
    if (n.is_string())
      addr = n.get<std::string>();
    else if (n.is_object() && !first_unknown_key(n, {"address"}).empty())
      return bad(
        unknown_key_message(first_unknown_key(n, {"address"}), "a node entry", {"address"}));
    else if (n.is_object() && n.contains("address") && n["address"].is_string())
      addr = n["address"].get<std::string>();
    else
      return bad("each node must be \"HOST:PORT\" or {\"address\": \"HOST:PORT\"}, got "
                 + n.dump());
    std::string h;
    uint16_t p = 0;
    if (auto err = parse_host_port(addr, "a node address", h, p))
      return bad(describe(err));
    nodes.push_back(addr);
  }
  if (into.nodes.empty())
    into.nodes = nodes;
  auto str = [&](const char* key, std::string& out) -> caf::error {
    if (!j.contains(key))
      return caf::none;
    if (!j[key].is_string())
      return bad(std::string("\"") + key + "\" must be a string");
    if (out.empty())
      out = j[key].get<std::string>();
    return caf::none;
  };
  std::string token_file;
  for (auto [key, out] : {std::pair<const char*, std::string*>{"driver_ip", &into.host_ip},
                          {"token_file", &token_file},
                          {"tls_cert", &into.security.tls_cert},
                          {"tls_key", &into.security.tls_key},
                          {"tls_ca", &into.security.tls_ca}})
    if (auto err = str(key, *out))
      return err;
  if (!token_file.empty() && into.security.token.empty()) {
    auto tok = read_token_file(token_file);
    if (!tok)
      return tok.error();
    into.security.token = *tok;
  }
  return caf::none;
}

caf::expected<std::string> local_ip_facing(const std::string& peer_ip) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(peer_ip.c_str(), "9", &hints, &res) != 0 || res == nullptr)
    return make_error(errc::invalid_argument,
                      "cannot resolve " + peer_ip
                        + " to find the driver's address; pass --host-ip");
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  bool ok = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0
            && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0;
  freeaddrinfo(res);
  if (fd >= 0)
    ::close(fd);
  if (!ok)
    return make_error(errc::invalid_argument,
                      "no route to " + peer_ip
                        + " to find the driver's address; pass --host-ip");
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf));
  return std::string(buf);
}

caf::expected<std::string> cluster::impl::token_for(const std::string& host,
                                                    uint16_t port) const {
  if (!opts.security.token.empty() || opts.security.tls())
    return opts.security.token;
  // A loopback agent given no --token-file keeps a generated one for this user.
  if (is_loopback_host(host))
    return read_local_token(port);
  return make_error(errc::unauthorized,
                    "node agent at " + host + ":" + std::to_string(port)
                      + " requires the cluster token: pass the agent's --token-file (or "
                        "\"token_file\" in --cluster-config), and/or --tls-*");
}

caf::expected<caf::strong_actor_ptr>
cluster::impl::caf_connect(const std::string& host, uint16_t port, uint16_t target,
                           const std::string& what, std::chrono::milliseconds timeout) {
  auto start = cluster_clock::now();
  auto token = token_for(host, port);
  if (!token) {
    if (!is_loopback_host(host))
      return token.error();
    // No token for a loopback port: a peer that is no cafex agent at all (a web server on
    // the port) says so in the handshake, and that is the real cause to report.
    auto probe = dial->connect(host, port, target, std::string(32, '0'),
                               std::min(timeout, std::chrono::milliseconds{2000}));
    if (probe)
      ::close(*probe);
    else if (describe(probe.error()).find("does not speak the cafex handshake")
             != std::string::npos)
      return probe.error();
    return token.error();
  }
  // The front door authenticates this driver, then CAF takes the connection over: no
  // local port is opened on either side.
  auto fd = dial->connect(host, port, target, *token, timeout);
  if (!fd)
    return fd.error();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    timeout - (cluster_clock::now() - start));
  return caf_link_connect(sys, *fd, std::max(left, std::chrono::milliseconds(1)), what);
}

caf::error cluster::impl::connect_one(const std::string& address,
                                      cluster_clock::time_point deadline) {
  node n;
  n.address = address;
  if (auto err = parse_host_port(address, "--nodes", n.host, n.port))
    return err;
  auto budget = std::min(opts.connect_timeout, time_left(deadline));
  auto what = "node agent at " + address;
  auto ptr = caf_connect(n.host, n.port, 0, what, budget);
  if (!ptr)
    return ptr.error();
  n.agent = caf::actor_cast<node_agent_actor>(std::move(*ptr));
  // Both sides check: the agent refuses a driver of another version, and we refuse it.
  auto ver = ask<std::string>(n.agent, budget, version_atom::value, std::string(version()));
  if (!ver)
    return code_of(ver.error()) == errc::version_mismatch
             ? ver.error()
             : make_error(errc::node_lost,
                          what + " did not tell its version: " + describe(ver.error())
                            + "; is it a cafex node agent?");
  if (*ver != version())
    return make_error(errc::version_mismatch, what + " runs cafex " + *ver
                                                + " but this driver runs cafex " + version()
                                                + "; run one cafex version on every node");
  auto info = ask<node_info>(n.agent, budget, info_atom::value);
  if (!info)
    return make_error(errc::node_lost,
                      what + " did not describe itself: " + describe(info.error()));
  n.info = std::move(*info);
  spdlog::info("node {} at {}: ip {}, {} {} device(s)", n.info.node_id, address, n.info.ip,
               n.info.device_ids.size(), n.info.resource_name);
  nodes.push_back(std::move(n));
  return caf::none;
}

caf::error cluster::impl::check_nodes() {
  std::map<std::string, const node*> by_id;
  std::map<std::string, const node*> by_ip;
  std::vector<std::string> node_ids;
  std::set<std::string> ips;
  for (const auto& n : nodes) {
    auto [i, fresh] = by_id.emplace(n.info.node_id, &n);
    if (!fresh)
      return make_error(errc::invalid_config, "node agent " + n.info.node_id
                                                + " is listed twice (" + i->second->address
                                                + " and " + n.address
                                                + "); list each agent once");
    by_ip.emplace(n.info.ip, &n);
    node_ids.push_back(n.info.node_id);
    ips.insert(n.info.ip);
  }
  if (auto err = check_unique_ips(node_ids, ips))
    return err;
  if (driver_ip.empty()) {
    auto ip = local_ip_facing(nodes.front().info.ip);
    if (!ip)
      return ip.error();
    driver_ip = *ip;
  }
  if (by_ip.count(driver_ip) == 0) {
    std::string list;
    for (const auto& n : nodes)
      list += (list.empty() ? "" : ", ") + n.info.node_id.substr(0, 8) + "@" + n.info.ip;
    return make_error(errc::placement_failed,
                      "the driver's IP " + driver_ip + " is not the IP of any node agent ("
                        + list
                        + "), but the driver's node must hold a bundle; start "
                          "`cafex node` on this host too, or pass the right --host-ip");
  }
  return caf::none;
}

caf::error cluster::connect(std::chrono::steady_clock::time_point deadline) {
  auto& d = *impl_;
  if (d.opts.nodes.empty())
    return make_error(errc::invalid_argument,
                      "no node agents given; pass --nodes HOST:PORT,...");
  if (auto err = check_tls_files(d.opts.security))
    return err;
  auto dial = dialer::start(d.opts.security);
  if (!dial)
    return dial.error();
  d.dial = std::move(*dial);
  d.driver_ip = d.opts.host_ip;
  for (const auto& address : d.opts.nodes)
    if (auto err = d.connect_one(address, deadline))
      return err;
  return d.check_nodes();
}

std::vector<std::string> cluster::status(std::chrono::steady_clock::time_point deadline) {
  auto& d = *impl_;
  std::vector<std::string> out;
  caf::error setup = check_tls_files(d.opts.security);
  if (!setup) {
    auto dial = dialer::start(d.opts.security);
    if (dial)
      d.dial = std::move(*dial);
    else
      setup = dial.error();
  }
  for (const auto& address : d.opts.nodes) {
    nlohmann::json j{{"address", address}};
    caf::error err = setup ? setup : d.connect_one(address, deadline);
    if (!err) {
      auto st = d.ask<std::string>(d.nodes.back().agent,
                                   std::min(d.opts.connect_timeout, time_left(deadline)),
                                   status_atom::value);
      if (!st)
        err = st.error();
      else if (auto parsed = nlohmann::json::parse(*st, nullptr, false); parsed.is_object()) {
        parsed["address"] = address;
        j = std::move(parsed);
      } else
        err = make_error(errc::node_lost, "node agent at " + address + " sent no status");
    }
    if (err)
      j["error"] = message_of(err);
    out.push_back(j.dump());
  }
  return out;
}

caf::error cluster::add_local(node_agent_actor agent, std::string driver_ip) {
  auto& d = *impl_;
  impl::node n;
  n.agent = std::move(agent);
  n.local = true;
  auto info = d.ask<node_info>(n.agent, defaults::local_agent_timeout, info_atom::value);
  if (!info)
    return info.error();
  n.info = std::move(*info);
  d.nodes.push_back(std::move(n));
  d.driver_ip = std::move(driver_ip);
  return caf::none;
}

cluster::cluster(caf::actor_system& sys, cluster_options opts)
  : impl_(std::make_unique<impl>(sys, std::move(opts))) {
  impl_->dummy = sys.spawn(dummy_driver_impl, impl_->opts.connect_timeout,
                           this_driver_label());
}

cluster::~cluster() {
  shutdown();
}

const std::string& cluster::driver_ip() const {
  return impl_->driver_ip;
}

node_agent_actor cluster::agent_of(const std::string& node_id) const {
  for (const auto& n : impl_->nodes)
    if (n.info.node_id == node_id)
      return n.agent;
  return node_agent_actor{};
}

void cluster::shutdown() {
  auto& d = *impl_;
  if (d.stopped)
    return;
  d.stopped = true;
  caf::scoped_actor self{d.sys};
  // Waits (bounded by each agent's kill grace) until every worker process is reaped.
  self->request(d.dummy, defaults::kill_workers_timeout, kill_atom::value)
    .receive([](int32_t) {}, [](caf::error&) {});
  d.release_all();
  self->send_exit(d.dummy, caf::exit_reason::user_shutdown);
  if (d.dial)
    d.dial->stop();
}

} // namespace cafex
