// The driver's end of the same-node shared-memory hot path: it creates every ring of a
// dataflow generation (and unlinks them when done), writes step commands to the stage-0
// ranks, and runs one reader thread that waits on a shared doorbell and hands each
// report to the driver actor as an ordinary message.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/expected.hpp>

#include "actors/dataflow_protocol.hpp"
#include "transport/shm_ring.hpp"

namespace cafex {

class driver_shm_path {
public:
  struct sizes {
    size_t command_ring = size_t{4} << 20;
    size_t link_ring = size_t{64} << 20; ///< holds the largest hand-off (tensor bytes)
    size_t report_ring = size_t{4} << 20;
  };

  /// Creates the rings of one generation for a tp x pp grid and starts the reader.
  static caf::expected<std::unique_ptr<driver_shm_path>>
  create(const std::string& prefix, int tp, int pp, step_sink_actor sink, sizes sz);

  /// Stops the reader, closes and unlinks every ring.
  ~driver_shm_path();

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
  std::unique_ptr<shm_doorbell> bell_;
  std::atomic<bool> stop_{false};
  std::thread reader_;
};

/// A process-unique name prefix for one generation's rings.
std::string shm_prefix_for(uint64_t generation);

} // namespace cafex
