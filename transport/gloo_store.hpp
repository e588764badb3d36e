// Gloo's rendezvous Store over a cafex kv_store, so Gloo contexts meet through the
// driver's rendezvous server. Gloo expects its Store to throw; this adapter is the one
// place that turns cafex error values into gloo::IoException, and it remembers the
// error so the caller (make_gloo_collective) can return the original code.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <gloo/rendezvous/store.h>

#include "transport/rendezvous_store.hpp"

namespace cafex {

class gloo_store_adapter : public gloo::rendezvous::Store {
public:
  /// Keys go to `store` under "prefix/"; `timeout` bounds set and get, which Gloo calls
  /// without one. `store` must outlive the adapter.
  gloo_store_adapter(kv_store& store, std::string prefix, std::chrono::milliseconds timeout);

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  /// The error behind the last exception this adapter threw (none if it never threw).
  const caf::error& last_error() const { return last_error_; }

  /// Called after every successful set, with the key as Gloo named it (no prefix).
  void on_set(std::function<void(const std::string& key)> fn) { on_set_ = std::move(fn); }

  /// From any thread: every later call fails with `why` (the rendezvous was given up).
  void abandon(caf::error why);

private:
  [[noreturn]] void fail(caf::error err);
  /// Fails when abandon() was called.
  void check_abandoned();

  prefix_store store_;
  std::chrono::milliseconds timeout_;
  caf::error last_error_;
  std::function<void(const std::string&)> on_set_;
  std::mutex mtx_;       // guards abandoned_
  caf::error abandoned_; // set by abandon()
};

} // namespace cafex
