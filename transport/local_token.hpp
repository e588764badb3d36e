// The token of a loopback node agent started without --token-file. Every cafex listener
// requires a secret: such an agent generates one (32 random bytes) and keeps it in a file
// only this user can read, <runtime dir>/node-<port>.token, where the runtime dir is
// $XDG_RUNTIME_DIR/cafex or else /tmp/cafex-<uid> (mode 0700, owned by this user: a
// directory that is not is refused, never used). A driver on the same host given no
// --token-file reads it there. Nothing goes through argv or a world-readable file.
#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>

namespace cafex {

/// The runtime dir (created 0700 when missing) joined with node-<port>.token.
/// errc::unauthorized when the dir exists but is not private to this user.
caf::expected<std::string> local_token_path(uint16_t port);

/// Writes `token` to local_token_path(port) (0600, replacing a stale one); returns the path.
caf::expected<std::string> write_local_token(uint16_t port, const std::string& token);

/// The token a loopback agent on `port` wrote (errc::unauthorized, naming the path and
/// what to do, when there is none).
caf::expected<std::string> read_local_token(uint16_t port);

/// Removes the file (an agent's exit).
void remove_local_token(uint16_t port);

/// True for 127.0.0.0/8 and "localhost".
bool is_loopback_host(const std::string& host);

} // namespace cafex
