// The built-in workload of `cafex run`: `batch` requests with prompts derived from the
// seed, prefilled at step 0 and decoded one token per step after that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

class demo_workload {
public:
  demo_workload(uint64_t seed, int batch, int vocab_size);

  /// The next step's scheduler output (new requests first, then decodes).
  scheduler_output next_step();

  /// Feeds back what the model sampled for the step just run.
  void observe(const model_runner_output& out);

  /// After a recovery dropped every KV cache: the next step prefills each request again
  /// with its prompt plus the tokens it generated so far (recompute), and decoding then
  /// goes on where it stopped.
  void recompute() { recompute_ = true; }

  /// A prompt of the workload (deterministic in seed and index).
  static std::vector<int32_t> prompt(uint64_t seed, int index, int vocab_size);

private:
  uint64_t seed_;
  int batch_;
  int vocab_;
  uint64_t step_ = 0;
  std::vector<std::string> ids_;
  std::vector<int32_t> last_;
  std::vector<std::vector<int32_t>> generated_; ///< per request
  bool recompute_ = false;
};

} // namespace cafex
