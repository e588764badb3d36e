// The one timer of an actor that keeps its deadlines in a deadline_queue
// (runtime/dataflow/deadline_queue.hpp): arming it sends the actor (deadline_atom, 0) at
// the time the queue asks for. Used by the driver (step deadlines) and the client actor
// (call deadlines).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "actors/atoms.hpp"
#include "runtime/dataflow/deadline_queue.hpp"

namespace cafex {

/// Arms `self`'s deadline timer for `at`, when the queue said to (`at` set).
template <class Self>
void arm_deadline_timer(Self* self, std::optional<deadline_queue::time_point> at) {
  if (at)
    self->delayed_send(self, std::max(*at - self->clock().now(), caf::timespan{0}),
                       deadline_atom::value, uint64_t{0});
}

} // namespace cafex
