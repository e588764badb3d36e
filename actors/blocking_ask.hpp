// A blocking request with a deadline from a non-actor thread (the executor facade, its
// recovery thread, the cluster orchestration), and the time left before a deadline.
// Never call these from an actor's handler: they block the calling thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include "runtime/error.hpp"

namespace cafex {

/// Milliseconds until `deadline`, at least 1 (CAF treats a zero timeout as "none").
inline std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - std::chrono::steady_clock::now());
  return std::max(d, std::chrono::milliseconds(1));
}

/// Sends `xs...` to `dest` and waits up to `timeout` for its `R` answer. A timeout comes
/// back as errc::timeout naming the bound; any other error as `dest` sent it.
template <class R, class Handle, class... Ts>
caf::expected<R> blocking_ask(caf::actor_system& sys, const Handle& dest,
                              std::chrono::milliseconds timeout, Ts&&... xs) {
  caf::scoped_actor self{sys};
  caf::expected<R> out{caf::error{}};
  self->request(dest, timeout, std::forward<Ts>(xs)...)
    .receive([&](R& r) { out = std::move(r); },
             [&](caf::error& e) {
               if (e == caf::sec::request_timeout)
                 out = make_error(errc::timeout, "no answer within "
                                                   + std::to_string(timeout.count()) + " ms");
               else
                 out = std::move(e);
             });
  return out;
}

} // namespace cafex
