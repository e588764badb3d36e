#include "transport/worker_routes.hpp"

#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/os/fd_passing.hpp"

namespace cafex {

worker_routes::~worker_routes() {
  for (auto& [route, fd] : channels_)
    ::close(fd);
}

caf::expected<uint16_t> worker_routes::add(int channel) {
  std::lock_guard<std::mutex> g{mtx_};
  for (int tries = 0; tries < 65535; ++tries) {
    uint16_t r = next_;
    next_ = next_ == 65535 ? 1 : static_cast<uint16_t>(next_ + 1);
    if (channels_.emplace(r, channel).second)
      return r;
  }
  ::close(channel);
  return make_error(errc::spawn_failed, "all 65535 worker routes of this node are taken");
}

void worker_routes::remove(uint16_t route) {
  std::lock_guard<std::mutex> g{mtx_};
  auto i = channels_.find(route);
  if (i == channels_.end())
    return;
  ::close(i->second);
  channels_.erase(i);
}

bool worker_routes::has(uint16_t route) const {
  std::lock_guard<std::mutex> g{mtx_};
  return channels_.count(route) > 0;
}

caf::error worker_routes::pass(uint16_t route, int fd) {
  caf::error err;
  {
    std::lock_guard<std::mutex> g{mtx_};
    auto i = channels_.find(route);
    if (i == channels_.end())
      err = make_error(errc::worker_lost, "no worker serves route " + std::to_string(route)
                                            + " on this node any more");
    else
      err = send_fd(i->second, fd);
  }
  ::close(fd);
  return err;
}

} // namespace cafex
