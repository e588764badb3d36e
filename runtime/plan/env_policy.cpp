#include "runtime/plan/env_policy.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

extern char** environ; // POSIX; declared here because no header is required to

namespace cafex {

namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos)
    return "";
  auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

} // namespace

env_policy default_env_policy(const env_map& driver_env) {
  env_policy out;
  auto i = driver_env.find(non_carry_over_env_var);
  if (i != driver_env.end()) {
    std::stringstream ss(i->second);
    std::string item;
    while (std::getline(ss, item, ','))
      if (auto name = trim(item); !name.empty())
        out.non_carry_over.insert(name);
  }
  return out;
}

env_map select_env_to_copy(const env_map& driver_env, const env_policy& policy) {
  env_map out;
  for (const auto& [name, value] : driver_env) {
    if (policy.worker_specific.count(name) > 0 || policy.non_carry_over.count(name) > 0)
      continue;
    // A lambda cannot capture a structured binding before C++20 (clang refuses it).
    const std::string& key = name;
    bool wanted = policy.additional.count(key) > 0
                  || std::any_of(policy.prefixes.begin(), policy.prefixes.end(),
                                 [&](const std::string& p) { return starts_with(key, p); });
    if (wanted)
      out.emplace(name, value);
  }
  return out;
}

env_map read_process_environment() {
  env_map out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0)
      continue; // not NAME=VALUE: nothing a worker could use
    out.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return out;
}

bool is_secret_env(const std::string& name) {
  if (env_policy{}.additional.count(name) > 0)
    return true;
  std::string upper;
  for (char c : name)
    upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const char* word : {"TOKEN", "SECRET", "PASSWORD", "KEY"})
    if (upper.find(word) != std::string::npos)
      return true;
  return false;
}

env_map redact_secrets(const env_map& env) {
  env_map out = env;
  for (auto& [name, value] : out)
    if (is_secret_env(name))
      value = "<redacted>";
  return out;
}

} // namespace cafex
