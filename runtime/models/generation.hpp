// A host's request loop for a fixed set of prompts, as vLLM's LLMEngine runs them: every
// prompt is prefilled in the first step, then each running request decodes one token per
// step until it stops: at an EOS id of the model (unless ignore_eos), at one of its stop
// token ids ("stop"; the token is kept, as vLLM and transformers keep it), at max_tokens,
// or at the model's length limit ("length"). A request the model failed alone ends with
// its error; the others go on. After a recovery dropped every KV cache, recompute()
// re-prefills each running request with its prompt plus what it generated (a seeded
// request then samples the same tokens: the draw depends on the position only).
//
// Pure logic: no executor, no I/O (`cafex generate` drives it). tests/unit/test_generation.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dataflow/scheduler_output.hpp"

namespace cafex {

struct generation_output {
  std::string req_id;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> token_ids;
  std::string finish_reason; ///< "length" or "stop"; empty while running or on error
  std::vector<token_logprobs> logprobs; ///< one per token when asked
  std::string error;                    ///< why the model failed this request
  bool done() const { return !finish_reason.empty() || !error.empty(); }
};

/// Why a request stops after it generated `token`, its `generated`-th token (`total`:
/// prompt plus generated tokens): "stop" at an EOS id of the model (unless ignore_eos) or
/// one of its stop ids, once min_tokens were generated; "length" at max_tokens or at the
/// model's length limit `max_len`; "" while it goes on. vLLM's stop checker, for ids.
const char* stop_reason(const sampling_params& p, const std::vector<int32_t>& eos,
                        int32_t token, int64_t generated, int64_t total, int64_t max_len);

class generation {
public:
  /// `eos_ids`: the model's (config.json, generation_config.json); `max_model_len`: its
  /// length limit (prompt plus generated tokens).
  generation(std::vector<int32_t> eos_ids, int64_t max_model_len);

  /// Adds a prompt; its id is "gen-<index>".
  const std::string& add(std::vector<int32_t> prompt, sampling_params params);

  bool done() const;

  /// The next step: new requests (prefill) first, then running ones (decode); requests
  /// that ended since the last step are listed in `finished`. Empty when done().
  scheduler_output next_step();

  /// What the model answered for the step last returned by next_step().
  void observe(const model_runner_output& out);

  /// Every running request prefills again (prompt + generated) in the next step.
  void recompute();

  const std::vector<generation_output>& outputs() const { return out_; }

private:
  void finish_check(size_t i);

  std::vector<int32_t> eos_;
  int64_t max_len_;
  std::vector<generation_output> out_;
  std::vector<sampling_params> params_;
  std::vector<bool> prefilled_;
  std::vector<std::string> finished_; ///< ended since the last step
  uint64_t step_id_ = 0;
};

} // namespace cafex
