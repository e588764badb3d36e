// The driver's end of the same-node shared-memory hot path: it creates every ring of a
// dataflow generation (and unlinks them when done), writes step commands to the stage-0
// ranks, and runs one reader thread that waits on a shared doorbell and hands each
// report to the driver actor as an ordinary message. Its direct lane (driver_lane.hpp)
// lets a blocking caller run a step over the same rings without the actors.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "actors/dataflow_protocol.hpp"
#include "actors/driver_lane.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

class driver_shm_path {
public:
  struct sizes {
    size_t command_ring = size_t{4} << 20;
    size_t link_ring = size_t{64} << 20; ///< holds the largest hand-off (tensor bytes)
    size_t report_ring = size_t{4} << 20;
    size_t call_ring = size_t{4} << 20; ///< collective_rpc arguments (larger: actor path)
  };

  /// Creates the rings of one generation for a tp x pp grid and starts the reader;
  /// `step_timeout` bounds a step on the direct lane.
  static caf::expected<std::shared_ptr<driver_shm_path>>
  create(const std::string& prefix, int tp, int pp, step_sink_actor sink, sizes sz,
         std::chrono::milliseconds step_timeout,
         std::shared_ptr<direct_lane::counters> lane_counts);

  /// The generation ends: fails the direct step running with `why`, closes every ring
  /// (the workers' hot loops let go) and stops the reader. A caller still holding the
  /// path sees closed rings; the memory goes with the last holder.
  void close(const caf::error& why);

  /// close() if not done, then unmaps (and unlinks) every ring.
  ~driver_shm_path();

  direct_lane& lane() { return *lane_; }

  /// Sends step `seq` to every stage-0 rank.
  caf::error dispatch(uint64_t seq, const scheduler_output& step);

  const std::string& prefix() const { return prefix_; }

  /// Every worker has opened its rings: removes their names from /dev/shm, so that
  /// nothing is left there even when this process is SIGKILLed.
  void unlink_names();

private:
  driver_shm_path() = default;
  void read_loop();
  std::string prefix_;
  step_sink_actor sink_;
  std::vector<std::unique_ptr<shm_ring>> commands_; ///< stage-0 ranks
  std::vector<std::unique_ptr<shm_ring>> links_;    ///< rank r -> r + tp
  std::vector<std::unique_ptr<shm_ring>> reports_;  ///< every rank
  std::vector<std::unique_ptr<shm_ring>> calls_;    ///< direct lane -> every rank
  std::vector<std::unique_ptr<shm_ring>> replies_;  ///< every rank -> direct lane
  std::unique_ptr<shm_doorbell> bell_;
  std::unique_ptr<shm_doorbell> lane_bell_; ///< rung by the output rank for direct steps
  std::unique_ptr<shm_board> board_;        ///< each rank's last finished direct step
  std::unique_ptr<direct_lane> lane_;
  int output_rank_ = 0;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

/// A process-unique name prefix for one generation's rings.
std::string shm_prefix_for(uint64_t generation);

/// Where a blocking execute_model finds the dataflow's direct lane: the driver actor
/// publishes the path of a compiled same-node generation here and takes it back when
/// the generation ends.
class lane_slot {
public:
  void publish(std::shared_ptr<driver_shm_path> p) {
    std::lock_guard<std::mutex> guard{mtx_};
    path_ = std::move(p);
  }
  std::shared_ptr<driver_shm_path> get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return path_;
  }

private:
  mutable std::mutex mtx_;
  std::shared_ptr<driver_shm_path> path_;
};

} // namespace cafex
