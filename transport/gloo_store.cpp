#include "transport/gloo_store.hpp"

#include <gloo/common/error.h>

#include "runtime/error.hpp"

namespace cafex {

gloo_store_adapter::gloo_store_adapter(kv_store& store, std::string prefix,
                                       std::chrono::milliseconds timeout)
  : store_(std::move(prefix), store), timeout_(timeout) {}

void gloo_store_adapter::fail(caf::error err) {
  last_error_ = std::move(err);
  throw gloo::IoException(describe(last_error_));
}

void gloo_store_adapter::set(const std::string& key, const std::vector<char>& data) {
  if (auto err = store_.set(key, data, timeout_))
    fail(std::move(err));
}

std::vector<char> gloo_store_adapter::get(const std::string& key) {
  // Gloo's own stores block in get() until the key exists; so does ours, bounded.
  auto value = store_.get(key, timeout_);
  if (!value)
    fail(value.error());
  return std::move(*value);
}

void gloo_store_adapter::wait(const std::vector<std::string>& keys) {
  wait(keys, timeout_);
}

void gloo_store_adapter::wait(const std::vector<std::string>& keys,
                              const std::chrono::milliseconds& timeout) {
  // Gloo passes its context timeout; never wait longer than ours.
  auto bound = timeout.count() > 0 ? std::min(timeout, timeout_) : timeout_;
  if (auto err = store_.wait(keys, bound))
    fail(std::move(err));
}

} // namespace cafex
