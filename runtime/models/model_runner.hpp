// The model-runner interface a worker drives, and the registry that names
// implementations. A runner holds one shard: its TP slice of its PP stage's layers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/models/collective.hpp"
#include "runtime/models/model_config.hpp"
#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

/// Where a shard sits in the TP x PP grid.
struct shard_info {
  int tp_rank = 0;
  int tp_size = 1;
  int pp_rank = 0;
  int pp_size = 1;
};

/// Hidden states passed from one PP stage to the next: row-major [num_tokens x hidden],
/// tokens in scheduler order (each new request's prompt, then one per cached request).
struct intermediate_tensors {
  int64_t num_tokens = 0;
  int64_t hidden_size = 0;
  std::vector<float> hidden;
};

/// What one stage produces: the next stage's input, or (last stage) the step's output.
struct stage_result {
  intermediate_tensors to_next; ///< valid when this is not the last stage
  model_runner_output output;   ///< valid on the last stage
};

/// A model shard. Not thread-safe: one worker drives it from one thread.
class model_runner {
public:
  virtual ~model_runner() = default;

  /// Builds this shard's weights. `tp` outlives the runner and has `shard.tp_size` ranks.
  virtual caf::error load(const model_config& cfg, const shard_info& shard,
                          collective& tp) = 0;

  /// Runs this stage for one step. `input` is null on stage 0 and the previous stage's
  /// output elsewhere. Frees the KV cache of `step.finished` first. An empty step
  /// returns an empty result. Fails (never throws) on unknown request ids, sequences
  /// longer than max_seq_len, mismatched inputs, or a failed collective.
  virtual caf::expected<stage_result> execute(const scheduler_output& step,
                                              const intermediate_tensors* input) = 0;

  /// Number of requests that hold KV cache on this shard.
  virtual size_t live_requests() const = 0;

  /// Frees every request's KV cache (recovery re-prefills live requests). Returns false
  /// when the runner cannot: the worker then reloads it, which drops them too.
  virtual bool drop_requests() { return false; }
};

using model_factory = std::function<std::unique_ptr<model_runner>()>;

/// Name -> factory. "reference" and "hf" (a Hugging Face checkpoint, model_config::path)
/// are registered by default (and "reference-cuda" in CUDA builds); hosts add their own.
class model_registry {
public:
  static model_registry& instance();
  void add(const std::string& name, model_factory factory);
  /// Null when the name is unknown.
  std::unique_ptr<model_runner> create(const std::string& name) const;
  /// The runner a worker on `device` uses for model `name`: "name-device" when such a
  /// runner is registered (so "reference" on cuda becomes "reference-cuda"), else `name`
  /// itself (a host's runner that handles its device on its own).
  std::string resolve(const std::string& name, const std::string& device) const;
  std::vector<std::string> names() const;

private:
  model_registry();
  std::map<std::string, model_factory> factories_;
};

} // namespace cafex
