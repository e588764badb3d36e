// Gloo's rendezvous Store over a cafex kv_store, so Gloo contexts meet through the
// driver's rendezvous server. Gloo expects its Store to throw; this adapter is the one
// place that turns cafex error values into gloo::IoException, and it remembers the
// error so the caller (make_gloo_collective) can return the original code.
#pragma once

#include <chrono>
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

private:
  [[noreturn]] void fail(caf::error err);

  prefix_store store_;
  std::chrono::milliseconds timeout_;
  caf::error last_error_;
};

} // namespace cafex
