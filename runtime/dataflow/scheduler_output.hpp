// What a step asks of the model and what it answers: the C++ form of vLLM's
// SchedulerOutput and ModelRunnerOutput, reduced to what the reference model needs.
// Every struct has an inspect() so CAF can carry it between processes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "runtime/models/sampling.hpp"

namespace cafex {

/// A request scheduled for the first time: its whole prompt is prefilled this step.
/// Its sampling parameters hold for its whole life (the "hf" model keeps them with its KV
/// cache; the reference model is always greedy).
struct new_request {
  new_request() = default;
  new_request(std::string id, std::vector<int32_t> tokens, sampling_params params = {})
    : req_id(std::move(id)), prompt(std::move(tokens)), sampling(std::move(params)) {
    // Nothing.
  }

  std::string req_id;
  std::vector<int32_t> prompt;
  sampling_params sampling;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, new_request& x) {
  return f(caf::meta::type_name("cafex::new_request"), x.req_id, x.prompt, x.sampling);
}

/// A request already running: it decodes one token, `token` (the one it sampled last;
/// the scheduler sends it because stages before the last never see sampled tokens).
struct cached_request {
  std::string req_id;
  int32_t token = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cached_request& x) {
  return f(caf::meta::type_name("cafex::cached_request"), x.req_id, x.token);
}

/// One step's work. Requests are processed in the order new ones then cached ones, and
/// results come back in that order. `finished` requests free their KV cache first.
struct scheduler_output {
  uint64_t step_id = 0;
  std::vector<new_request> new_requests;
  std::vector<cached_request> cached_requests;
  std::vector<std::string> finished;

  bool empty() const { return new_requests.empty() && cached_requests.empty(); }
  size_t num_requests() const { return new_requests.size() + cached_requests.size(); }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scheduler_output& x) {
  return f(caf::meta::type_name("cafex::scheduler_output"), x.step_id, x.new_requests,
           x.cached_requests, x.finished);
}

/// What the last pipeline stage answers for one step.
struct model_runner_output {
  uint64_t step_id = 0;
  std::vector<std::string> req_ids; ///< in scheduler order
  std::vector<int32_t> sampled;     ///< one token per request (-1 where it failed)
  /// Empty when every request ran; else one entry per request, "" where it ran and what
  /// went wrong where it alone failed (its KV cache did not fit, an unknown id, ...).
  std::vector<std::string> errors;
  /// Empty when no request asked for logprobs; else one entry per request (token -1
  /// where the request asked for none or failed).
  std::vector<token_logprobs> logprobs;
  /// Final hidden state (after the last norm) of each request's last token, row-major
  /// [req_ids.size() x hidden_size]; filled only when the model is asked to return it.
  std::vector<float> hidden;
  /// KV-connector bookkeeping (empty without a connector): requests this rank finished
  /// sending / receiving.
  std::vector<std::string> finished_sending;
  std::vector<std::string> finished_recving;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, model_runner_output& x) {
  return f(caf::meta::type_name("cafex::model_runner_output"), x.step_id, x.req_ids, x.sampled,
           x.hidden, x.finished_sending, x.finished_recving, x.errors, x.logprobs);
}

} // namespace cafex
