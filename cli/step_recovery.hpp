// What a command that runs steps does when one fails under the restart policy: whether
// the failure is one the executor recovers from, and a bounded wait for it to be ready.
#pragma once

#include <chrono>

#include "cafex/executor.hpp"

namespace cafex::cli {

/// Errors after which the restart policy recovers (the step may be resubmitted).
bool recoverable(const caf::error& err);

/// Waits (bounded) until the executor is ready again; false when it failed for good.
bool wait_ready(executor& ex, std::chrono::milliseconds timeout);

} // namespace cafex::cli
