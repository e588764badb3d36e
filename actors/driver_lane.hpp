// The caller's direct lane into a same-node dataflow: a blocking execute_model that finds
// the dataflow idle writes its step straight into the stage-0 command rings and waits on
// the output rank's report ring itself (a bounded spin, then a futex sleep), so a step
// costs two wake-ups instead of the six of the actor path (client actor, driver actor,
// report reader and back). The driver actor still owns the dataflow: it opens the lane
// once the rings are compiled, closes it (failing the step on it) on a loss, a teardown
// or a shutdown, and keeps the lane and its own steps from using the rings at once.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "actors/dataflow_protocol.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

struct report_message;

/// Hands a report from the rings to the driver actor as its message (result, progress,
/// stepfail): the report reader's way, and the caller's for a late answer of the
/// driver's own step that it finds on the output ring.
void forward_report(const step_sink_actor& sink, report_message& m);

class direct_lane {
public:
  /// Steps that ended on the lanes of every generation (the driver's stats).
  struct counters {
    std::atomic<uint64_t> ok{0};
    std::atomic<uint64_t> failed{0};
    std::atomic<uint64_t> calls{0}; ///< collective_rpc calls answered on the lane
  };

  /// The rings of one generation (owned by driver_shm_path, which outlives the lane).
  struct rings {
    std::vector<shm_ring*> commands; ///< stage-0 ranks
    shm_ring* output = nullptr;      ///< the output rank's reports
    shm_doorbell* bell = nullptr;    ///< rung by the output rank for direct steps
    shm_board* board = nullptr;      ///< each rank's last finished direct step
    std::vector<shm_ring*> calls;    ///< collective_rpc, by rank
    std::vector<shm_ring*> replies;  ///< their answers, by rank
    int tp = 1;
    int pp = 1;
  };

  direct_lane(rings r, std::chrono::milliseconds step_timeout, step_sink_actor sink,
              std::shared_ptr<counters> counts);

  // -- the driver actor's side --------------------------------------------------

  /// The dataflow is compiled: direct steps and calls may run. `names` by rank ("rank 3
  /// on node ab12") for the messages.
  void open(std::vector<std::string> names);
  /// Refuses direct steps from now on and fails the one running with `why`.
  void close(const caf::error& why);
  /// The driver is about to dispatch a step through the rings: false while a direct step
  /// runs (the lane then sends lanefree_atom to the driver once it ends).
  bool claim_for_actor();
  /// One of the driver's own steps through the rings has ended.
  void release_for_actor();
  /// A direct step runs now (a teardown then leaves the TP ranks at unknown collectives).
  bool busy() const;

  // -- the driver's report reader -------------------------------------------------

  /// Takes every report waiting on the output ring unless a direct step owns the ring.
  void drain_output(std::vector<std::vector<char>>& into);
  /// A rank failed direct step `seq`: true when this is the step's first failure while
  /// it runs (only that one goes on to the driver: one incident, one recovery).
  bool fail(uint64_t seq, const caf::error& err);

  // -- the caller -----------------------------------------------------------------

  /// Runs `step` on the lane; nullopt when the lane is not free (closed, the driver's
  /// own steps in flight, another caller on it): then the step takes the actor path.
  std::optional<caf::expected<model_runner_output>> run(const scheduler_output& step);

  /// collective_rpc of `method` on every rank, in rank order; nullopt when the lane
  /// cannot take it (closed, another call on it, arguments too large for the rings).
  std::optional<caf::expected<std::vector<std::string>>>
  call(const std::string& method, const std::string& args, std::chrono::milliseconds timeout);

private:
  caf::expected<std::vector<std::string>> collect(uint64_t id, const std::string& method,
                                                  std::chrono::milliseconds timeout);
  caf::expected<model_runner_output> wait_for(uint64_t seq, uint64_t step_id);
  caf::error overdue(uint64_t seq, uint64_t step_id) const;
  void end_step(bool ok);

  rings rings_;
  std::chrono::milliseconds step_timeout_;
  step_sink_actor sink_;
  std::shared_ptr<counters> counts_;
  std::chrono::microseconds spin_;
  mutable std::mutex mtx_;
  bool open_ = false;
  bool busy_ = false;
  bool driver_waiting_ = false;
  int actor_in_flight_ = 0;
  uint64_t next_ = 0;
  uint64_t running_ = 0; ///< the direct step's seq while busy_
  caf::error failure_;   ///< set by close() or fail() for the running step
  std::atomic<bool> has_failure_{false};
  std::vector<std::string> names_;
  bool calling_ = false; ///< a collective_rpc runs on the lane
  uint64_t next_call_ = 0;
  caf::error call_failure_; ///< set by close() for the running call
  std::atomic<bool> has_call_failure_{false};
  std::vector<char> reply_;   ///< the caller's reply buffer, reused
  std::vector<char> command_; ///< the step's bytes, reused (one caller at a time)
  std::vector<char> bytes_;   ///< the caller's report buffer, reused
};

} // namespace cafex
