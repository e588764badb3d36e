// Failure injection for `cafex chaos` and tests: worker methods that break, slow or fail
// one rank on purpose, and the test models `sleepy` and `failing_load`. Off by default:
// worker_main registers them only when the worker's environment has
// CAFEX_FAULT_INJECTION=1 (workers inherit it from their node agent); a test worker
// program registers the models itself.
#pragma once

#include "actors/worker_methods.hpp"

namespace cafex {

/// The variable that turns fault injection on in a worker ("1").
inline constexpr const char* fault_injection_env = "CAFEX_FAULT_INJECTION";

/// True when `value` (the variable's content, may be null) turns fault injection on.
bool fault_injection_enabled(const char* value);

/// fault.break_collective {"rank": R}: rank R's next all-reduce fails and its TP
///     communicator stays broken until reinitialize_distributed (peers fail too).
/// fault.delay {"rank": R, "ms": M, "steps": N}: rank R's next N steps each wait M ms
///     before running, and its next N all-reduces each wait M ms.
/// fault.die_in {"rank": R, "method": M}: rank R crashes (SIGKILL to itself) the next
///     time it starts method M, e.g. reinitialize_distributed during a recovery.
/// fault.die_before_forward {"rank": R}: rank R crashes in its next step, after its
///     collectives and before it hands its output to the next stage (pp > 1 only): the
///     next stage's TP ranks then wait, one for input, the other in a collective.
/// fault.fail {"rank": R}: fails with method_failed on rank R; other ranks answer.
/// fault.throw {"rank": R}: throws on rank R (the worker survives: method_failed).
/// Every method answers its rank on the ranks it does not hit.
method_table fault_methods();

/// Registers the test models: `sleepy` (the reference model; a step holding a request
/// named "sleepN-..." sleeps N ms on every stage), `failing_load` (load fails on TP
/// rank 1) and `slow_load` (load takes 1 s on every rank). Idempotent.
void register_fault_models();

} // namespace cafex
