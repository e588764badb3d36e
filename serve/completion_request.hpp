// POST /v1/completions bodies, as the OpenAI completions API and vLLM's server define
// them: parsing and validation, with messages that say exactly what is wrong and name the
// field. Every field the service does not honour is refused (400 naming it), never
// silently ignored. Pure logic (no sockets, no executor): tests/unit/test_serve_request.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "runtime/models/sampling.hpp"

namespace cafex::serve {

/// What the service accepts; every field has its default here.
struct request_limits {
  int vocab_size = 512;        ///< token ids must be in [0, vocab_size)
  int max_seq_len = 4096;      ///< prompt plus generated tokens, per request
  int max_tokens_limit = 1024; ///< upper bound of max_tokens
  int default_max_tokens = 16; ///< when max_tokens is absent (OpenAI's default)
  int max_choices = 64;        ///< prompts x n, per request
  /// The default temperature (OpenAI's is 1). The reference model samples too, so 1.
  float default_temperature = 1.0f;
  std::string model_name = "cafex"; ///< what `model` must be, when given
};

/// A valid completion request: every prompt gets `n` choices, each a request of its own
/// in the batcher (choice index = prompt index x n + j).
struct completion_request {
  std::vector<std::vector<int32_t>> prompts;
  int n = 1;
  /// The sampling of choice 0 of every prompt; choice j of a seeded request uses seed + j
  /// (vLLM's rule for n > 1). max_tokens is that of prompts[0] when max_tokens_to_context.
  sampling_params sampling;
  bool max_tokens_to_context = false; ///< max_tokens null: up to the model's length limit
  bool stream = false;
  bool include_usage = false; ///< stream_options.include_usage
  bool echo = false;          ///< the prompt's ids come back in prompt_token_ids

  /// Choice j of prompt i: its sampling (seed and max_tokens resolved: with max_tokens
  /// null, up to the model's length limit, within --max-tokens-limit).
  sampling_params choice_sampling(size_t prompt, int j, const request_limits& limits) const;
};

/// Why a body was refused: the 400's (or 404's) message, the field it is about (empty:
/// none) and OpenAI's string error code.
struct request_error {
  std::string message;
  std::string param;
  std::string code = "invalid_value";
  int status = 400;
};

/// Parses a JSON body. Unknown fields are refused, naming them; `user` is accepted as the
/// caller's tag (OpenAI's) and otherwise unused.
std::variant<completion_request, request_error>
parse_completion_request(const std::string& body, const request_limits& limits);

} // namespace cafex::serve
