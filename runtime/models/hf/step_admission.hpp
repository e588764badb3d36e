// Which requests of a step run on a shard of an hf model, decided the same way on every
// stage and rank (CPU and CUDA runners alike): running requests first (a decode needs one
// more position), then new ones in scheduler order; a request that is unknown, too long,
// holds a token outside the vocabulary, asks for invalid sampling or does not fit the KV
// cache fails alone, with its error, and the rest of the step runs. Pure logic.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "runtime/dataflow/scheduler_output.hpp"
#include "runtime/models/model_runner.hpp"

namespace cafex::hf {

/// What a shard admits against.
struct admission_rules {
  int64_t free = 0;   ///< units of KV cache free on the shard now
  int64_t budget = 0; ///< units in all
  int64_t max_len = 0;
  int64_t vocab = 0;
  const char* unit = "token(s)"; ///< what a unit is, in the "cache is full" error
  /// Units a request holding `len` committed tokens needs for `add` more (null: `add`).
  std::function<int64_t(int64_t len, int64_t add)> cost;
};

/// The verdict on every request of a step, new ones first, then cached ones.
struct step_admission {
  std::vector<std::string> ids;    ///< every request of the step, in that order
  std::vector<std::string> errors; ///< per id: empty when admitted
  size_t new_count = 0;            ///< ids[0, new_count) are the step's new requests
  int64_t used = 0;                ///< units the admitted requests take

  bool admitted(size_t i) const { return errors[i].empty(); }
  bool any_failed() const;
};

/// `live_len(id)`: the committed tokens of a running request, or -1 when it is not running
/// on this shard. errc::invalid_argument when the step names a request twice.
caf::expected<step_admission>
admit_step(const scheduler_output& step, const admission_rules& rules,
           const std::function<int64_t(const std::string&)>& live_len);

/// On a stage after the first: errc::invalid_argument unless `input` holds the `tokens`
/// rows of `hidden` values this stage admitted (every stage admits alike, so a mismatch
/// means a broken hand-off).
caf::error check_stage_input(const intermediate_tensors* input, int64_t tokens, int64_t hidden,
                             int pp_rank);

/// On the last stage: `out` holds one sample (and logprobs entry, when any) per admitted
/// request in admission order; spreads them over every request of the step (-1 and an
/// empty entry for the failed ones) and fills req_ids, and errors when any failed.
void scatter_outputs(const step_admission& a, model_runner_output& out);

} // namespace cafex::hf
