#include "cli/metrics_endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex::cli {

namespace {

std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"')
      out += '\\';
    if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void send_all(int fd, const std::string& text) {
  size_t off = 0;
  while (off < text.size()) {
    auto n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n <= 0)
      return;
    off += static_cast<size_t>(n);
  }
}

std::string reply(int code, const char* reason, const std::string& type,
                  const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type
         + "\r\nContent-Length: " + std::to_string(body.size())
         + "\r\nConnection: close\r\n\r\n" + body;
}

} // namespace

std::string prometheus_text(const std::string& status_json, uint64_t refused_peers) {
  auto j = nlohmann::json::parse(status_json, nullptr, false);
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  if (j.is_object()) {
    metric("cafex_node_info", "gauge", "this node agent (always 1)");
    out += "cafex_node_info{node_id=\"" + label(j.value("node_id", "")) + "\",ip=\""
           + label(j.value("ip", "")) + "\",version=\"" + label(j.value("version", ""))
           + "\",resource=\"" + label(j.value("resource", "")) + "\"} 1\n";
    const auto& devices = j["devices"];
    metric("cafex_node_devices", "gauge", "devices this agent offers");
    out += "cafex_node_devices " + std::to_string(devices.size()) + "\n";
    metric("cafex_node_device_free", "gauge", "unreserved share of each device (0 to 1)");
    std::set<uint64_t> reservations;
    std::string reserved;
    for (const auto& d : devices) {
      const auto id = std::to_string(d.value("id", -1));
      out += "cafex_node_device_free{device=\"" + id + "\"} "
             + std::to_string(d.value("free", 0.0)) + "\n";
      double taken = 0;
      for (const auto& r : d["reserved"]) {
        taken += r.value("share", 0.0);
        reservations.insert(r.value("reservation", uint64_t{0}));
      }
      reserved += "cafex_node_device_reserved{device=\"" + id + "\"} " + std::to_string(taken)
                  + "\n";
    }
    metric("cafex_node_device_reserved", "gauge", "reserved share of each device (0 to 1)");
    out += reserved;
    metric("cafex_node_reservations", "gauge", "drivers' reservations held");
    out += "cafex_node_reservations " + std::to_string(reservations.size()) + "\n";
    std::map<std::string, int> states{{"running", 0}, {"starting", 0}};
    for (const auto& w : j["workers"])
      ++states[w.value("state", "unknown")];
    metric("cafex_node_workers", "gauge", "worker processes by state");
    for (const auto& [state, n] : states)
      out += "cafex_node_workers{state=\"" + label(state) + "\"} " + std::to_string(n) + "\n";
  }
  metric("cafex_node_refused_peers_total", "counter",
         "connections the front door refused (bad handshake, token, TLS, limits)");
  out += "cafex_node_refused_peers_total " + std::to_string(refused_peers) + "\n";
  return out;
}

caf::expected<std::unique_ptr<metrics_endpoint>>
metrics_endpoint::start(metrics_endpoint_options o) {
  std::unique_ptr<metrics_endpoint> self{new metrics_endpoint()};
  self->opts_ = std::move(o);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(self->opts_.port);
  if (::inet_pton(AF_INET, self->opts_.host.c_str(), &a.sin_addr) != 1)
    return make_error(errc::invalid_argument,
                      "--metrics-listen: '" + self->opts_.host + "' is not an IPv4 address");
  self->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(self->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (self->listen_fd_ < 0
      || ::bind(self->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0
      || ::listen(self->listen_fd_, 16) != 0)
    return make_error(errc::invalid_config, "--metrics-listen " + self->opts_.host + ":"
                                              + std::to_string(self->opts_.port)
                                              + ": cannot listen (" + errno_text(errno)
                                              + "): pick a free port and a local address");
  socklen_t len = sizeof a;
  ::getsockname(self->listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  self->port_ = ntohs(a.sin_port);
  auto* raw = self.get();
  self->thread_ = std::thread([raw] { raw->serve(); });
  return self;
}

metrics_endpoint::~metrics_endpoint() {
  stop();
}

void metrics_endpoint::stop() {
  stopping_ = true;
  if (thread_.joinable())
    thread_.join();
  if (listen_fd_ >= 0)
    ::close(listen_fd_);
  listen_fd_ = -1;
}

void metrics_endpoint::serve() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) // wakes to see stopping_
      continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      continue;
    answer(fd);
    ::close(fd);
  }
}

void metrics_endpoint::answer(int fd) {
  std::string req;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 4096) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return; // silent or slow: dropped
    char buf[1024];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      return;
    req.append(buf, static_cast<size_t>(n));
  }
  const auto line = req.substr(0, req.find("\r\n"));
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
    send_all(fd, reply(400, "Bad Request", "text/plain", "not an HTTP request\n"));
    return;
  }
  const auto method = line.substr(0, sp1), path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (path != "/metrics") {
    send_all(fd, reply(404, "Not Found", "text/plain", "only /metrics is served here\n"));
    return;
  }
  if (method != "GET") {
    send_all(fd, reply(405, "Method Not Allowed", "text/plain", "use GET\n"));
    return;
  }
  send_all(fd, reply(200, "OK", "text/plain; version=0.0.4", opts_.render()));
}

} // namespace cafex::cli
