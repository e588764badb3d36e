#include "transport/caf_link.hpp"

#include <cerrno>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/multiplexer.hpp>
#include <caf/scoped_actor.hpp>

#include "runtime/error.hpp"
#include "runtime/os/errno_text.hpp"

namespace cafex {

namespace {

caf::actor basp_of(caf::actor_system& sys) {
  // Created by middleman::start(); later calls only look it up.
  return sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
}

/// CAF 0.17.6's basp_broker files a client connection (connect_atom) with `last_seen` at
/// the clock's epoch and sets it only when bytes arrive, so the next heartbeat tick (every
/// heartbeat_interval) closes a link whose peer has not sent its server handshake yet,
/// with sec::connection_timeout. The serving side writes that handshake unprompted: wait
/// for its first bytes here, so that CAF is handed a socket it reads at once.
caf::error await_first_bytes(int fd, std::chrono::milliseconds timeout,
                             const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + timeout;
  auto next_report = start + std::chrono::seconds{1};
  for (;;) {
    auto now = clock::now();
    if (now >= deadline)
      return make_error(errc::node_lost, what + ": no CAF handshake within "
                                           + std::to_string(timeout.count())
                                           + " ms; is the peer overloaded or stopped?");
    if (now >= next_report) {
      spdlog::info("still waiting for the CAF handshake of {} ({} ms of {} ms)", what,
                   std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count(),
                   timeout.count());
      next_report += std::chrono::seconds{1};
    }
    auto wait = std::chrono::ceil<std::chrono::milliseconds>(std::min(deadline, next_report)
                                                             - now);
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(wait.count()));
    if (n < 0 && errno != EINTR)
      return make_error(errc::transport_failed,
                        what + ": waiting for its CAF handshake failed: " + errno_text(errno));
    if (n <= 0)
      continue;
    if ((p.revents & POLLIN) != 0)
      return caf::none; // data, or an orderly close CAF reports itself
    return make_error(errc::node_lost,
                      what + " closed the connection before its CAF handshake");
  }
}

} // namespace

caf::expected<caf::strong_actor_ptr> caf_link_connect(caf::actor_system& sys, int fd,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  if (auto err = await_first_bytes(fd, timeout, what)) {
    ::close(fd);
    return err;
  }
  timeout -= std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - start);
  timeout = std::max(timeout, std::chrono::milliseconds{1});
  // A second descriptor of the socket, to cut a peer that never completes the handshake
  // (BASP itself would wait for it forever).
  int spare = ::dup(fd);
  auto& mm = sys.middleman();
  auto scribe = mm.backend().new_scribe(fd);
  caf::scoped_actor self{sys};
  caf::expected<caf::strong_actor_ptr> out{caf::error{}};
  self->request(basp_of(sys), timeout, caf::connect_atom::value, std::move(scribe), link_port)
    .receive(
      [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        if (ptr)
          out = std::move(ptr);
        else
          out = make_error(errc::node_lost, what + " serves nothing on this link");
      },
      [&](caf::error& e) {
        out = make_error(errc::node_lost, what + ": "
                                            + (e == caf::sec::request_timeout
                                                 ? "no CAF handshake within "
                                                     + std::to_string(timeout.count()) + " ms"
                                                 : sys.render(e)));
      });
  if (spare >= 0) {
    if (!out)
      ::shutdown(spare, SHUT_RDWR);
    ::close(spare);
  }
  return out;
}

void caf_link_serve(caf::actor_system& sys, int fd, const caf::strong_actor_ptr& whom,
                    std::set<std::string> sigs) {
  auto scribe = sys.middleman().backend().new_scribe(fd);
  caf::anon_send(basp_of(sys), caf::publish_atom::value, std::move(scribe), link_port, whom,
                 std::move(sigs));
}

caf::expected<std::pair<int, int>> make_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error(errc::transport_failed,
                      "socketpair failed: " + errno_text(errno)
                        + "; is the process out of file descriptors (ulimit -n)?");
  return std::make_pair(sv[0], sv[1]);
}

} // namespace cafex
