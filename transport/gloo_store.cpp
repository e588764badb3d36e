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

void gloo_store_adapter::abandon(caf::error why) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!abandoned_)
    abandoned_ = std::move(why);
}

void gloo_store_adapter::check_abandoned() {
  caf::error why;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    why = abandoned_;
  }
  if (why)
    fail(std::move(why));
}

void gloo_store_adapter::set(const std::string& key, const std::vector<char>& data) {
  check_abandoned();
  if (auto err = store_.set(key, data, timeout_))
    fail(std::move(err));
  if (on_set_)
    on_set_(key);
}

std::vector<char> gloo_store_adapter::get(const std::string& key) {
  check_abandoned();
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
  check_abandoned();
  // Gloo passes its context timeout; never wait longer than ours.
  auto bound = timeout.count() > 0 ? std::min(timeout, timeout_) : timeout_;
  if (auto err = store_.wait(keys, bound))
    fail(std::move(err));
}

} // namespace cafex
