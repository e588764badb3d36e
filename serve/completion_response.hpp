// What POST /v1/completions answers, in OpenAI's shapes (and vLLM's `token_ids`): the
// response object, the stream's `text_completion` chunks, usage, logprobs, and errors.
// cafex-serve has no tokenizer, so `text` is always "" and the tokens are in `token_ids`
// (vLLM's field for them); a logprobs token is written "token_id:N", as vLLM writes it
// with return_tokens_as_token_ids. Pure logic: tests/unit/test_serve_response.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "completion_request.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex::serve {

/// OpenAI's error object: {"error": {"message", "type", "param", "code"}}; `type` follows
/// the status (invalid_request_error below 500, server_error from 500), `param` is null
/// when empty, `code` is a string ("invalid_value", "queue_full", ...).
std::string openai_error(int status, const std::string& message, const std::string& code,
                         const std::string& param = {});

/// GET /v1/models: the one served model.
std::string models_list(const std::string& model, int64_t created, int64_t max_model_len);

/// One completion request's answer being built: its choices (prompt i, sample j at index
/// i x n + j) as their tokens arrive. Streaming, each token becomes one chunk and nothing
/// is kept but counts; else the tokens are kept for the one response.
class completion_job {
public:
  completion_job(const completion_request& req, std::string id, std::string model,
                 int64_t created);

  size_t choices() const { return choices_.size(); }
  bool streaming() const { return stream_; }
  const std::string& id() const { return id_; }
  /// The prompt of choice `c`.
  const std::vector<int32_t>& prompt_of(size_t c) const;

  /// Choice `c` generated `token` (`finish`: "stop"/"length" on its last one, else "").
  /// Streaming, returns the server-sent event that carries it; else "".
  std::string token(size_t c, int32_t token, const token_logprobs* lp, const char* finish);

  /// Choice `c` ended; true once every choice has.
  bool choice_done(size_t c);

  /// The response object (not streaming), once every choice is done.
  std::string body() const;
  /// The stream's end (usage chunk when asked, then [DONE]), once every choice is done.
  std::string stream_end() const;

  uint64_t prompt_tokens() const { return prompt_tokens_; }
  uint64_t completion_tokens() const { return completion_tokens_; }

private:
  struct choice {
    size_t prompt = 0;
    std::vector<int32_t> tokens;
    std::vector<token_logprobs> logprobs;
    std::string finish;
    bool done = false;
    bool first_sent = false; ///< streaming: its first chunk went out
  };

  std::string id_, model_;
  int64_t created_ = 0;
  bool stream_ = false, include_usage_ = false, echo_ = false, want_logprobs_ = false;
  std::vector<std::vector<int32_t>> prompts_;
  std::vector<choice> choices_;
  size_t done_ = 0;
  uint64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

/// A fresh public completion id: "cmpl-" and 24 hex digits from a random source.
std::string new_completion_id();

} // namespace cafex::serve
