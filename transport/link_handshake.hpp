// The lines of the link handshake (link_security.hpp) as pure functions: each parser takes
// one line as read from the peer (without its '\n'; take_line strips it) and returns the
// fields, or nullopt for anything but the exact form the other side writes. No socket, no
// allocation beyond the returned fields, so they are unit-tested with hostile input and
// fuzzed (tests/fuzz/fuzz_link_handshake.cpp). The front door parses hello and auth, the
// dialer challenge and reply.
//
// Fields are separated by exactly one space; nonces and MACs are exactly 64 lowercase hex
// characters (32 random bytes, HMAC-SHA256); the target is decimal without sign or leading
// zeros, 0..65535. A line longer than max_line_length is refused whatever it holds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cafex::handshake {

/// Longest handshake line, '\n' included: the size of each side's read buffer, so a peer
/// that sends more without a newline fails the read instead of growing the buffer.
constexpr size_t max_line_length = 512;

/// Hex characters of a nonce (make_nonce) and of a MAC (hmac_hex).
constexpr size_t hex_length = 64;

constexpr std::string_view magic = "CAFEX-LINK";
constexpr std::string_view version = "1";

/// client -> server: "CAFEX-LINK 1 <target> <client nonce>".
struct hello {
  uint16_t target = 0; ///< 0: the agent itself; else a worker's port on 127.0.0.1
  std::string client_nonce;
};

/// server -> client: "CHALLENGE <server nonce> <server mac>".
struct challenge {
  std::string server_nonce;
  std::string server_mac;
};

/// server -> client, last line: "OK" or "REFUSED <why>".
struct reply {
  bool ok = false;
  std::string why; ///< REFUSED only; bytes outside printable ASCII replaced by '?'
};

std::optional<hello> parse_hello(std::string_view line);
std::optional<challenge> parse_challenge(std::string_view line);

/// client -> server: "AUTH <client mac>"; returns the MAC.
std::optional<std::string> parse_auth(std::string_view line);

/// "OK", "REFUSED" or "REFUSED <why>" (the why is shown to the user, so it is made safe
/// to print: a hostile server cannot put terminal escapes into the driver's log).
std::optional<reply> parse_reply(std::string_view line);

/// True for exactly hex_length characters of [0-9a-f].
bool is_hex_field(std::string_view s);

} // namespace cafex::handshake
