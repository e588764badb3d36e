// A worker's stage of the compiled dataflow, free of actor code: open the channels to
// its pipeline neighbours, run one step on its shard, move intermediate tensors out of
// band, and say what to report to the driver.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "actors/dataflow_protocol.hpp"
#include "actors/worker_methods.hpp"
#include "transport/channel.hpp"
#include "transport/tensor_desc.hpp"

namespace cafex {

class worker_stage {
public:
  /// Opens the channels this rank needs (from the previous stage, to the next one).
  /// Blocks until the neighbours connect or the config's deadline passes.
  static caf::expected<std::unique_ptr<worker_stage>> open(const worker_state& st,
                                                           dag_config cfg);

  /// Test seam: a stage over given channels (either may be null).
  worker_stage(dag_config cfg, int rank, int tp_rank, std::unique_ptr<p2p_channel> from_prev,
               std::unique_ptr<p2p_channel> to_next);

  /// Fault injection: `run` consults these before every step.
  void set_fault_hooks(std::shared_ptr<fault_hooks> hooks) { faults_ = std::move(hooks); }

  const dag_config& config() const { return cfg_; }
  bool first() const { return cfg_.stage == 0; }
  bool last() const { return cfg_.stage == cfg_.num_stages - 1; }

  /// Reads the previous stage's tensor described by `desc` from the channel.
  caf::expected<intermediate_tensors> receive(uint64_t seq, const tensor_desc& desc);

  /// What running one step produced for the driver and the next stage.
  struct outcome {
    std::optional<model_runner_output> report; ///< send as result to the driver
    std::optional<tensor_desc> forward;        ///< send on to the next stage
    intermediate_tensors tensors;              ///< bytes to push after `forward`
  };

  /// Runs the shard on `step`; decides what this rank reports.
  caf::expected<outcome> run(model_runner& runner, uint64_t seq, const scheduler_output& step,
                             const intermediate_tensors* input);

  /// Pushes the bytes of `out.tensors` to the next stage (after its descriptor was sent).
  caf::error push(uint64_t seq, const outcome& out);

private:
  /// The loopback KV connector: a request finished this step is reported as finished
  /// sending after `rank % 2` more steps, so ranks disagree for a while.
  void kv_bookkeeping(const scheduler_output& step, model_runner_output& out);

  dag_config cfg_;
  int rank_;
  int tp_rank_;
  std::unique_ptr<p2p_channel> from_prev_;
  std::unique_ptr<p2p_channel> to_next_;
  std::deque<std::vector<std::string>> kv_delay_;
  std::shared_ptr<fault_hooks> faults_; ///< the worker's; null on the test seam
};

} // namespace cafex
