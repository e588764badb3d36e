#include "runtime/models/hf/step_admission.hpp"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/models/sampling.hpp"

namespace cafex::hf {

bool step_admission::any_failed() const {
  return std::any_of(errors.begin(), errors.end(),
                     [](const std::string& e) { return !e.empty(); });
}

caf::expected<step_admission>
admit_step(const scheduler_output& step, const admission_rules& rules,
           const std::function<int64_t(const std::string&)>& live_len) {
  step_admission a;
  a.new_count = step.new_requests.size();
  for (const auto& r : step.new_requests)
    a.ids.push_back(r.req_id);
  for (const auto& r : step.cached_requests)
    a.ids.push_back(r.req_id);
  std::set<std::string> seen;
  for (const auto& id : a.ids)
    if (!seen.insert(id).second)
      return make_error(errc::invalid_argument,
                        "hf model: step " + std::to_string(step.step_id) + " names request '"
                          + id + "' twice: schedule each request once per step");
  a.errors.assign(a.ids.size(), std::string{});
  int64_t free = rules.free;
  auto cost = [&](int64_t len, int64_t add) {
    return rules.cost ? rules.cost(len, add) : add;
  };
  auto no_room = [&](const std::string& id, int64_t need) {
    return fmt::format("request '{}': the KV cache is full ({} {} needed, {} of {} "
                       "free on this shard): finish other requests first or raise "
                       "--kv-cache-tokens",
                       id, need, rules.unit, std::max<int64_t>(free, 0), rules.budget);
  };
  auto bad_token = [&](int32_t t) { return t < 0 || t >= rules.vocab; };
  // Running requests first: a decode needs one position.
  for (size_t i = 0; i < step.cached_requests.size(); ++i) {
    const auto& r = step.cached_requests[i];
    auto& err = a.errors[a.new_count + i];
    const int64_t len = live_len(r.req_id);
    const int64_t need = len < 0 ? 0 : cost(len, 1);
    if (len < 0)
      err = "request '" + r.req_id
            + "' is not running on this shard (never prefilled, "
              "finished, or dropped by a recovery): submit it as a new request";
    else if (len + 1 > rules.max_len)
      err = fmt::format("request '{}' reached the model's length limit of {} tokens "
                        "(max_position_embeddings)",
                        r.req_id, rules.max_len);
    else if (bad_token(r.token))
      err = fmt::format("request '{}': token {} is outside the vocabulary of {}", r.req_id,
                        r.token, rules.vocab);
    else if (need > free)
      err = no_room(r.req_id, need);
    else
      free -= need;
  }
  for (size_t i = 0; i < a.new_count; ++i) {
    const auto& r = step.new_requests[i];
    auto& err = a.errors[i];
    const auto len = static_cast<int64_t>(r.prompt.size());
    const int64_t need = cost(0, len);
    if (live_len(r.req_id) >= 0)
      err = "request '" + r.req_id + "' is already running: a new request needs a new id";
    else if (len == 0)
      err = "request '" + r.req_id + "' has an empty prompt";
    else if (len > rules.max_len)
      err = fmt::format("request '{}': its prompt of {} tokens exceeds the model's length "
                        "limit of {} (max_position_embeddings)",
                        r.req_id, len, rules.max_len);
    else if (std::any_of(r.prompt.begin(), r.prompt.end(), bad_token))
      err = fmt::format("request '{}': its prompt has a token outside the vocabulary of {}",
                        r.req_id, rules.vocab);
    else if (auto bad = check_sampling(r.sampling, rules.vocab); !bad.empty())
      err = "request '" + r.req_id + "': " + bad;
    else if (need > free)
      err = no_room(r.req_id, need);
    else
      free -= need;
  }
  a.used = rules.free - free;
  return a;
}

caf::error check_stage_input(const intermediate_tensors* input, int64_t tokens, int64_t hidden,
                             int pp_rank) {
  if (input != nullptr && input->num_tokens == tokens && input->hidden_size == hidden
      && input->hidden.size() == static_cast<size_t>(tokens * hidden))
    return caf::none;
  return make_error(errc::invalid_argument,
                    fmt::format("hf model (pp rank {}): the previous stage sent {} token(s) "
                                "of hidden size {}, this stage admitted {} of {}",
                                pp_rank, input ? input->num_tokens : 0,
                                input ? input->hidden_size : 0, tokens, hidden));
}

void scatter_outputs(const step_admission& a, model_runner_output& out) {
  std::vector<int32_t> sampled(a.ids.size(), -1);
  std::vector<token_logprobs> logprobs(out.logprobs.empty() ? 0 : a.ids.size());
  size_t k = 0;
  for (size_t i = 0; i < a.ids.size(); ++i) {
    if (!a.admitted(i))
      continue;
    if (!logprobs.empty())
      logprobs[i] = std::move(out.logprobs[k]);
    sampled[i] = out.sampled[k++];
  }
  out.req_ids = a.ids;
  out.sampled = std::move(sampled);
  out.logprobs = std::move(logprobs);
  if (a.any_failed())
    out.errors = a.errors;
}

} // namespace cafex::hf
