#include "transport/link_security.hpp"

#include <sys/stat.h>

#include <cstdio>

#include <fstream>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "runtime/error.hpp"

namespace cafex {

namespace {

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

std::string mac_input(const char* label, const std::string& a, const std::string& b,
                      uint16_t target) {
  return std::string(label) + "|" + a + "|" + b + "|" + std::to_string(target);
}

} // namespace

caf::expected<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(errc::invalid_config, "cannot read token file " + path
                                              + "; create one with: openssl rand -hex 32 > "
                                              + path + " && chmod 600 " + path);
  std::string line;
  std::getline(in, line);
  auto b = line.find_first_not_of(" \t\r");
  auto e = line.find_last_not_of(" \t\r");
  std::string token = b == std::string::npos ? "" : line.substr(b, e - b + 1);
  if (token.size() < 16)
    return make_error(errc::invalid_config,
                      "token file " + path + " holds " + std::to_string(token.size())
                        + " characters on its first line, fewer than 16; use e.g. "
                          "openssl rand -hex 32 > "
                        + path);
  return token;
}

std::string token_file_warning(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & 077) == 0)
    return {};
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return "token file " + path + " is readable by other users (mode " + mode
         + "): anyone who reads it can drive the cluster; chmod 600 " + path;
}

caf::error check_tls_files(const link_security& sec) {
  if (!sec.tls())
    return caf::none;
  const std::pair<const char*, const std::string*> files[] = {{"--tls-cert", &sec.tls_cert},
                                                              {"--tls-key", &sec.tls_key},
                                                              {"--tls-ca", &sec.tls_ca}};
  for (const auto& [flag, path] : files)
    if (path->empty())
      return make_error(errc::invalid_argument,
                        std::string("TLS needs --tls-cert, --tls-key and --tls-ca together; ")
                          + flag + " is missing");
  for (const auto& [flag, path] : files) {
    if (!std::ifstream(*path))
      return make_error(errc::invalid_argument, std::string(flag) + ": cannot read " + *path);
  }
  return caf::none;
}

std::string make_nonce() {
  unsigned char buf[32];
  if (RAND_bytes(buf, sizeof(buf)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return hex(buf, sizeof(buf));
}

std::string hmac_hex(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return hex(out, len);
}

bool equal_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string server_mac(const std::string& token, const std::string& client_nonce,
                       const std::string& server_nonce, uint16_t target) {
  if (token.empty())
    return "-";
  return hmac_hex(token, mac_input("server", client_nonce, server_nonce, target));
}

std::string client_mac(const std::string& token, const std::string& client_nonce,
                       const std::string& server_nonce, uint16_t target) {
  if (token.empty())
    return "-";
  return hmac_hex(token, mac_input("client", server_nonce, client_nonce, target));
}

} // namespace cafex
