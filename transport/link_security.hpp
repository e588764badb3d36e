// Security of the links between drivers and node agents: a shared cluster token proven
// by HMAC-SHA256 challenge-response (the token never crosses the wire), and optional
// mutual TLS. CAF 0.17 has no per-connection authentication hook, so the node agent's
// public port is a front door (front_door.hpp) that runs this handshake and only then
// relays bytes to the agent's CAF port on 127.0.0.1; drivers reach it through a local
// dialer (dialer.hpp) that runs the client side.
//
// Handshake, one text line each way (at most 512 bytes, 5 s deadline), inside TLS when
// configured:
//   client: "CAFEX-LINK 1 <target> <client nonce>"        target 0: the agent itself
//   server: "CHALLENGE <server nonce> <server mac>"       mac: HMAC(token, "server|" nc|ns|t)
//   client: "AUTH <client mac>"                           HMAC(token, "client|" ns|nc|t)
//   server: "OK" or "REFUSED <why>", then raw bytes both ways.
// Distinct "server|"/"client|" labels stop a peer from reflecting one side's MAC.
// The lines are parsed, strictly, by link_handshake.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/expected.hpp>

namespace cafex {

struct link_security {
  std::string token;    ///< cluster token (empty: none; then TLS must be on)
  std::string tls_cert; ///< this side's certificate (PEM)
  std::string tls_key;  ///< its private key (PEM)
  std::string tls_ca;   ///< CA that must have signed the peer's certificate (PEM)
  std::chrono::milliseconds handshake_timeout{5000};

  bool tls() const { return !tls_cert.empty() || !tls_key.empty() || !tls_ca.empty(); }
  bool enabled() const { return !token.empty() || tls(); }
};

/// Reads a token file: the first line, trimmed; at least 16 characters. Errors
/// (errc::invalid_config) say what is wrong with the file and how to make one.
/// A warning (as ssh gives for a private key) when the token file at `path` can be read by
/// group or others; empty when it cannot, or cannot be examined.
std::string token_file_warning(const std::string& path);

caf::expected<std::string> read_token_file(const std::string& path);

/// Checks that all three TLS files are given and readable (errc::invalid_argument).
caf::error check_tls_files(const link_security& sec);

/// 32 random bytes as lowercase hex.
std::string make_nonce();

/// HMAC-SHA256(key, data) as lowercase hex.
std::string hmac_hex(const std::string& key, const std::string& data);

/// Constant-time comparison of two strings.
bool equal_secret(const std::string& a, const std::string& b);

/// The MACs of the handshake above.
std::string server_mac(const std::string& token, const std::string& client_nonce,
                       const std::string& server_nonce, uint16_t target);
std::string client_mac(const std::string& token, const std::string& client_nonce,
                       const std::string& server_nonce, uint16_t target);

} // namespace cafex
