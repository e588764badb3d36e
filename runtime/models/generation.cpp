#include "runtime/models/generation.hpp"

#include <algorithm>

namespace cafex {

const char* stop_reason(const sampling_params& p, const std::vector<int32_t>& eos,
                        int32_t token, int64_t generated, int64_t total, int64_t max_len) {
  auto has = [token](const std::vector<int32_t>& v) {
    return std::find(v.begin(), v.end(), token) != v.end();
  };
  if (generated >= p.min_tokens && ((!p.ignore_eos && has(eos)) || has(p.stop_token_ids)))
    return "stop";
  if (generated >= p.max_tokens || total >= max_len)
    return "length";
  return "";
}

generation::generation(std::vector<int32_t> eos_ids, int64_t max_model_len)
  : eos_(std::move(eos_ids)), max_len_(max_model_len) {
  // Nothing.
}

const std::string& generation::add(std::vector<int32_t> prompt, sampling_params params) {
  generation_output o;
  o.req_id = "gen-" + std::to_string(out_.size());
  o.prompt_ids = std::move(prompt);
  out_.push_back(std::move(o));
  params_.push_back(std::move(params));
  prefilled_.push_back(false);
  return out_.back().req_id;
}

bool generation::done() const {
  return std::all_of(out_.begin(), out_.end(),
                     [](const generation_output& o) { return o.done(); });
}

scheduler_output generation::next_step() {
  scheduler_output s;
  if (done())
    return s;
  s.step_id = step_id_++;
  s.finished = std::move(finished_);
  finished_.clear();
  for (size_t i = 0; i < out_.size(); ++i) {
    const auto& o = out_[i];
    if (o.done() || prefilled_[i])
      continue;
    new_request r;
    r.req_id = o.req_id;
    r.prompt = o.prompt_ids;
    r.prompt.insert(r.prompt.end(), o.token_ids.begin(), o.token_ids.end());
    r.sampling = params_[i];
    // A re-prefill's prompt holds what it generated: min_tokens counts only what is left.
    r.sampling.min_tokens = std::max<int32_t>(0, r.sampling.min_tokens
                                                   - static_cast<int32_t>(o.token_ids.size()));
    s.new_requests.push_back(std::move(r));
  }
  for (size_t i = 0; i < out_.size(); ++i) {
    const auto& o = out_[i];
    if (!o.done() && prefilled_[i])
      s.cached_requests.push_back({o.req_id, o.token_ids.back()});
  }
  for (const auto& r : s.new_requests)
    prefilled_[std::stoul(r.req_id.substr(4))] = true;
  return s;
}

void generation::observe(const model_runner_output& out) {
  for (size_t k = 0; k < out.req_ids.size(); ++k) {
    const auto& id = out.req_ids[k];
    if (id.rfind("gen-", 0) != 0)
      continue;
    const auto i = std::stoul(id.substr(4));
    if (i >= out_.size() || out_[i].done())
      continue;
    auto& o = out_[i];
    if (!out.errors.empty() && !out.errors[k].empty()) {
      o.error = out.errors[k];
      finished_.push_back(o.req_id); // a running one keeps its KV cache until told
      continue;
    }
    o.token_ids.push_back(out.sampled[k]);
    if (params_[i].logprobs >= 0 && k < out.logprobs.size())
      o.logprobs.push_back(out.logprobs[k]);
    finish_check(i);
  }
}

void generation::finish_check(size_t i) {
  auto& o = out_[i];
  o.finish_reason = stop_reason(params_[i], eos_, o.token_ids.back(),
                                static_cast<int64_t>(o.token_ids.size()),
                                static_cast<int64_t>(o.prompt_ids.size() + o.token_ids.size()),
                                max_len_);
  if (o.done())
    finished_.push_back(o.req_id);
}

void generation::recompute() {
  finished_.clear(); // every KV cache is gone already
  std::fill(prefilled_.begin(), prefilled_.end(), false);
}

} // namespace cafex
