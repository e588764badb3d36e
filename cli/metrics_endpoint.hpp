// A Prometheus endpoint (`cafex node --metrics-listen`): GET /metrics answers the text
// exposition format from `render`, anything else 404 / 405 / 400. One connection at a
// time on a thread of its own; a request must arrive within 2 s and fit in 4 KiB; the
// connection closes after each answer. It serves counts only (no token, no address of a
// driver beyond its readable name): bind it to a management interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <caf/expected.hpp>

namespace cafex::cli {

struct metrics_endpoint_options {
  std::string host = "127.0.0.1";
  uint16_t port = 0; ///< 0: an ephemeral port (read it back with port())
  std::function<std::string()> render;
};

class metrics_endpoint {
public:
  static caf::expected<std::unique_ptr<metrics_endpoint>> start(metrics_endpoint_options o);
  ~metrics_endpoint();
  metrics_endpoint(const metrics_endpoint&) = delete;
  metrics_endpoint& operator=(const metrics_endpoint&) = delete;

  uint16_t port() const { return port_; }
  void stop();

private:
  metrics_endpoint() = default;
  void serve();
  void answer(int fd);

  metrics_endpoint_options opts_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

/// The agent's status (agent_status_json) and the front door's refusals as Prometheus
/// text: cafex_node_info, cafex_node_devices, cafex_node_device_free, ..._reserved,
/// cafex_node_reservations, cafex_node_workers{state}, cafex_node_refused_peers_total.
std::string prometheus_text(const std::string& status_json, uint64_t refused_peers);

} // namespace cafex::cli
