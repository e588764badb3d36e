// The driver's half of the compiled dataflow: compile on the first step, admit up to
// max_concurrent_batches steps, collect what the stages report, enforce one deadline per
// step, answer in step order, tear down.
#pragma once

#include <memory>

#include "actors/driver_actor.hpp"

namespace cafex {

/// Queues a step; compiles the dataflow first if needed; dispatches when a slot is free.
caf::result<model_runner_output> submit_step(driver_ptr self, scheduler_output step,
                                             bool fail_fast);

void on_step_result(driver_ptr self, uint64_t seq, int rank, model_runner_output& out);
void on_step_progress(driver_ptr self, uint64_t seq, int rank);
void on_step_failed(driver_ptr self, uint64_t seq, int rank, caf::error& err);
/// The step-deadline timer fired: fails every in-flight step past its deadline.
void on_step_deadline(driver_ptr self, uint64_t seq);

/// Fails every queued and in-flight step with `err`.
void fail_all_steps(driver_ptr self, const caf::error& err);

/// The shared-memory generation ends: takes the direct lane back from the callers, fails
/// its step with `why`, closes the rings and keeps the lane's step counts.
void retire_shm(driver_state& st, const caf::error& why);

/// A caller's direct step ended while the driver's own steps waited for the rings.
void on_lane_free(driver_ptr self);

/// Fails pending steps, closes every worker's channels, forgets the compiled dataflow.
/// True: steps were in flight (or `rebuild`: the caller rebuilds them anyway), the ranks
/// closed their TP communicators, and steps queue until end_rebuild.
caf::result<bool> teardown_dataflow(driver_ptr self, bool rebuild);

/// The executor rebuilt the communicators (why empty) or could not: queued steps compile
/// and run, or fail with why (and a broken communicator is recovered from under the
/// restart policy). False when no rebuild was awaited.
bool end_rebuild(driver_ptr self, const std::string& why);

/// The deadline of rebuild `number`: if it is still awaited, end it as failed.
void on_rebuild_deadline(driver_ptr self, uint64_t number);

/// Counters as JSON text: in_flight, max_in_flight, max_observed, dispatched, ...
std::string dataflow_stats(const driver_state& st);

} // namespace cafex
