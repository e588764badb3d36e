#include "transport/caf_link.hpp"

#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>

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

} // namespace

caf::expected<caf::strong_actor_ptr> caf_link_connect(caf::actor_system& sys, int fd,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& what) {
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
