#include "transport/rendezvous_store.hpp"

#include <cctype>

#include "runtime/error.hpp"

namespace cafex {

std::string store_address::to_string() const {
  if (host.find(':') != std::string::npos)
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

caf::expected<store_address> parse_store_url(const std::string& url) {
  auto fail = [&](const std::string& why) {
    return make_error(errc::invalid_argument,
                      "distributed_init_method '" + url + "' is invalid: " + why
                        + "; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:29500");
  };
  const std::string scheme = "tcp://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    return fail("it does not start with tcp://");
  auto rest = url.substr(scheme.size());
  store_address out;
  std::string port_text;
  if (!rest.empty() && rest.front() == '[') {
    // IPv6 literal: the brackets keep its colons apart from the port separator.
    auto close = rest.find(']');
    if (close == std::string::npos || close + 1 >= rest.size() || rest[close + 1] != ':')
      return fail("an IPv6 host must be written [ADDR]:PORT");
    out.host = rest.substr(1, close - 1);
    port_text = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string::npos)
      return fail("the port is missing");
    out.host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (out.host.find(':') != std::string::npos)
      return fail("an IPv6 host must be written [ADDR]:PORT");
  }
  if (out.host.empty())
    return fail("the host is empty");
  for (char c : out.host)
    if (std::isspace(static_cast<unsigned char>(c)) || c == '/')
      return fail("the host contains '" + std::string(1, c) + "'");
  if (port_text.empty() || port_text.size() > 5)
    return fail("the port must be a number from 1 to 65535");
  unsigned long port = 0;
  for (char c : port_text) {
    if (!std::isdigit(static_cast<unsigned char>(c)))
      return fail("the port must be a number from 1 to 65535");
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port == 0 || port > 65535)
    return fail("the port must be a number from 1 to 65535");
  out.port = static_cast<uint16_t>(port);
  return out;
}

prefix_store::prefix_store(std::string prefix, kv_store& inner)
  : prefix_(std::move(prefix)), inner_(inner) {
  // Accept "group" and "group/" alike so callers need not care.
  if (!prefix_.empty() && prefix_.back() != '/')
    prefix_ += '/';
}

std::string prefix_store::full_key(const std::string& key) const {
  return prefix_ + key;
}

std::vector<std::string> prefix_store::full_keys(const std::vector<std::string>& keys) const {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (auto& k : keys)
    out.push_back(full_key(k));
  return out;
}

caf::error prefix_store::set(const std::string& key, const std::vector<char>& value,
                             duration timeout) {
  return inner_.set(full_key(key), value, timeout);
}

caf::expected<std::vector<char>> prefix_store::get(const std::string& key, duration timeout) {
  return inner_.get(full_key(key), timeout);
}

caf::expected<int64_t> prefix_store::add(const std::string& key, int64_t delta,
                                         duration timeout) {
  return inner_.add(full_key(key), delta, timeout);
}

caf::expected<bool> prefix_store::check(const std::vector<std::string>& keys,
                                        duration timeout) {
  return inner_.check(full_keys(keys), timeout);
}

caf::error prefix_store::wait(const std::vector<std::string>& keys, duration timeout) {
  return inner_.wait(full_keys(keys), timeout);
}

caf::expected<bool> prefix_store::erase(const std::string& key, duration timeout) {
  return inner_.erase(full_key(key), timeout);
}

} // namespace cafex
