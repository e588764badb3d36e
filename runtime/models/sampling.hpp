// Per-request sampling, as vLLM's SamplingParams and Sampler define it: greedy by
// default; else logits / temperature, then top-k, then top-p, then one draw. The draw is
// counter-based: its uniform number depends only on the request's seed and the position
// of the token in the request, never on the batch, the TP or PP shape, or the worker, so
// the same seed gives the same tokens in every shape (and again after a recovery
// re-prefills the request). Logprobs are those of the raw logits (vLLM's default
// "raw_logprobs"): log_softmax before temperature and truncation.
//
// Pure logic: no actors, no I/O. Unit-tested in tests/unit/test_sampling.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cafex {

struct sampling_params {
  float temperature = 0.0f; ///< 0: greedy (argmax, lowest id on ties)
  int32_t top_k = 0;        ///< <= 0: the whole vocabulary
  float top_p = 1.0f;       ///< in (0, 1]
  float min_p = 0.0f;       ///< in [0, 1]: drop tokens below min_p x the likeliest's
  int64_t seed = -1;        ///< < 0: none (the model derives one from the request id)
  int32_t logprobs = -1;    ///< < 0: none; K >= 0: the sampled token's and the top K
  // What the host's request loop checks (the model runners ignore them):
  int32_t max_tokens = 16;             ///< tokens to generate at most
  std::vector<int32_t> stop_token_ids; ///< finish ("stop") after any of these
  bool ignore_eos = false;             ///< do not finish at the model's EOS ids
  /// No EOS id (unless ignore_eos) nor stop token id is sampled before this many tokens
  /// were generated: the model runners mask them (vLLM's min_tokens).
  int32_t min_tokens = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(caf::meta::type_name("cafex::sampling_params"), x.temperature, x.top_k, x.top_p,
           x.min_p, x.seed, x.logprobs, x.max_tokens, x.stop_token_ids, x.ignore_eos,
           x.min_tokens);
}

/// The most logprobs a request may ask for (vLLM's default max_logprobs).
constexpr int32_t max_logprobs = 20;

/// Empty when `p` is valid for a vocabulary of `vocab` tokens, else what is wrong, naming
/// the field and the value ("temperature must be >= 0, got -1").
std::string check_sampling(const sampling_params& p, int64_t vocab);

/// The sampled token's logprob and the top K (id, logprob), best first, lowest id on ties.
struct token_logprobs {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprobs& x) {
  return f(caf::meta::type_name("cafex::token_logprobs"), x.token, x.logprob, x.top_ids,
           x.top_logprobs);
}

/// The seed of a request without one: a hash of its id (stable across processes).
uint64_t default_seed(const std::string& req_id);

/// The uniform number in [0, 1) of the draw for the token at `position` (tokens before it
/// in the request, prompt included) of a request seeded `seed`.
double sample_uniform(uint64_t seed, int64_t position);

/// Reusable buffers of sample_token (one per model runner, so a step allocates nothing).
struct sampler_scratch {
  std::vector<float> values;
  std::vector<int32_t> ids;
  std::vector<float> masked; ///< the logits with min_tokens' banned ids at -inf
};

/// Samples one token from `logits[0..vocab)` under `p`: temperature, then min-p, top-k
/// and top-p (vLLM's order). Fills `lp` (when not null and p.logprobs >= 0) with the raw
/// logprobs of the sampled token and the top p.logprobs. `generated` (tokens the request
/// generated before this one, < 0: unknown) and `eos_ids` (the model's) serve min_tokens:
/// while generated < p.min_tokens, no EOS id (unless ignore_eos) nor stop id is drawn.
int32_t sample_token(const float* logits, int64_t vocab, const sampling_params& p,
                     uint64_t seed, int64_t position, sampler_scratch& scratch,
                     token_logprobs* lp, int64_t generated = -1,
                     const std::vector<int32_t>* eos_ids = nullptr);

} // namespace cafex
