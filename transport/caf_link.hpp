// CAF links over sockets that cafex opened and authenticated itself. No cafex process runs a
// BASP listener: a node agent's only port is its front door (front_door.hpp), a worker
// reaches its agent through a socketpair the agent made at spawn time, and a driver
// reaches an agent or a remote worker through the dialer (dialer.hpp). Each of those hands
// the connected socket to CAF's BASP broker here, so BASP never reads a byte from a peer
// that has not proven the cluster secret, and no other local process can reach BASP.
//
// CAF 0.17.6's basp_broker takes an already-connected socket in two messages (see
// CAF-NOTES.md): `connect_atom, scribe_ptr, port` runs the client side of the BASP
// handshake, and `publish_atom, scribe_ptr, port, whom, sigs` the server side, serving
// `whom` on that connection. `port` is only a key into BASP's table of published actors;
// cafex uses link_port below and never opens a doorman.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace cafex {

/// The key BASP files actors served over cafex links under (no socket has this port).
constexpr uint16_t link_port = 1;

/// Client side: runs BASP's handshake over the connected socket `fd` (owned from here on,
/// also on failure) and returns the actor the peer serves on it. It hands `fd` to CAF only
/// once the peer's handshake bytes arrived: CAF 0.17.6 closes a client link whose peer is
/// silent at its next heartbeat tick, so a peer slower than one heartbeat interval would
/// fail with connection_timeout (a progress line each second while it waits). Fails with
/// errc::node_lost, naming `what`, when the peer does not complete the handshake within
/// `timeout` (the socket is then shut down) or serves nothing.
caf::expected<caf::strong_actor_ptr> caf_link_connect(caf::actor_system& sys, int fd,
                                                      std::chrono::milliseconds timeout,
                                                      const std::string& what);

/// Server side: serves `whom` (with the messaging interface `sigs`, empty for dynamically
/// typed actors) over the connected socket `fd`; CAF owns the socket from here on.
void caf_link_serve(caf::actor_system& sys, int fd, const caf::strong_actor_ptr& whom,
                    std::set<std::string> sigs);

/// Both ends of a new AF_UNIX stream socketpair, close-on-exec (errc::transport_failed).
caf::expected<std::pair<int, int>> make_socketpair();

} // namespace cafex
