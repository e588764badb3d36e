// A node agent's direct routes to its workers: for each worker that serves drivers
// directly, the agent's end of an AF_UNIX channel to it, under a route number (1..65535)
// that drivers name as the target of the front door's handshake. The front door passes
// each authenticated connection for a route to its worker over the channel
// (fd_passing.hpp); the worker serves itself on it (caf_link.hpp). Thread-safe: the node
// agent actor adds and removes routes, the front door's thread passes connections.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace cafex {

class worker_routes {
public:
  worker_routes() = default;
  worker_routes(const worker_routes&) = delete;
  worker_routes& operator=(const worker_routes&) = delete;
  ~worker_routes();

  /// Files `channel` (owned from here on) under a free route number.
  /// errc::spawn_failed when all 65535 are taken.
  caf::expected<uint16_t> add(int channel);

  /// Closes the route's channel; unknown numbers are ignored.
  void remove(uint16_t route);

  bool has(uint16_t route) const;

  /// Passes `fd` to the route's worker and closes it here in every case.
  caf::error pass(uint16_t route, int fd);

private:
  mutable std::mutex mtx_;
  std::map<uint16_t, int> channels_;
  uint16_t next_ = 1;
};

/// A route held for one worker: removed when the lease goes (the worker's record ends).
class route_lease {
public:
  route_lease() = default;
  route_lease(std::shared_ptr<worker_routes> routes, uint16_t route)
    : routes_(std::move(routes)), route_(route) {}
  route_lease(route_lease&& other) noexcept
    : routes_(std::move(other.routes_)), route_(std::exchange(other.route_, 0)) {}
  route_lease& operator=(route_lease&& other) noexcept {
    if (this != &other) {
      release();
      routes_ = std::move(other.routes_);
      route_ = std::exchange(other.route_, 0);
    }
    return *this;
  }
  route_lease(const route_lease&) = delete;
  route_lease& operator=(const route_lease&) = delete;
  ~route_lease() { release(); }

  uint16_t route() const { return route_; }

private:
  void release() {
    if (routes_ && route_ != 0)
      routes_->remove(route_);
    route_ = 0;
  }
  std::shared_ptr<worker_routes> routes_;
  uint16_t route_ = 0;
};

} // namespace cafex
