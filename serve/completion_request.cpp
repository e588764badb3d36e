#include "completion_request.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cafex::serve {

namespace {

using json = nlohmann::json;

// Thrown inside the parser only, caught at its end: the first error wins.
struct refused {
  request_error err;
};

[[noreturn]] void refuse(std::string param, std::string message,
                         std::string code = "invalid_value") {
  throw refused{{std::move(message), std::move(param), std::move(code), 400}};
}

std::string type_of(const json& j) {
  if (j.is_number_integer())
    return "integer";
  return j.type_name(); // "string", "number", "array", "object", "boolean", "null"
}

/// An integer in [lo, hi]; a number outside int64 is refused, never wrapped.
int64_t get_int(const json& j, const std::string& name, int64_t lo, int64_t hi) {
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    refuse(name, "'" + name + "' = " + j.dump() + " is outside the 64-bit integer range");
  if (!j.is_number_integer())
    refuse(name, "'" + name + "' must be an integer, got " + type_of(j)
                   + (j.is_number_float() ? " (" + j.dump() + ")" : ""));
  auto v = j.get<int64_t>();
  if (v < lo || v > hi)
    refuse(name, "'" + name + "' = " + std::to_string(v) + " is out of range ["
                   + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

double get_number(const json& j, const std::string& name, double lo, double hi,
                  bool lo_open = false) {
  if (!j.is_number())
    refuse(name, "'" + name + "' must be a number, got " + type_of(j));
  auto v = j.get<double>();
  // The sampler takes floats: a value that rounds to the open bound (5e-324) is the bound.
  if (!std::isfinite(v) || v < lo || v > hi
      || (lo_open && static_cast<float>(v) <= static_cast<float>(lo)))
    refuse(name, "'" + name + "' = " + j.dump() + " is out of range "
                   + fmt::format("{}{}, {}]", lo_open ? "(" : "[", lo, hi));
  return v;
}

bool get_bool(const json& j, const std::string& name) {
  if (!j.is_boolean())
    refuse(name, "'" + name + "' must be true or false, got " + type_of(j));
  return j.get<bool>();
}

std::vector<int32_t> token_ids(const json& p, const std::string& name,
                               const request_limits& limits) {
  std::vector<int32_t> out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const auto& t = p[i];
    auto where = name + "[" + std::to_string(i) + "]";
    if (t.is_string())
      refuse(name, where
                     + " is text; cafex-serve has no tokenizer: send token ids "
                       "(tokenize on the client, e.g. with Hugging Face tokenizers)");
    auto v = get_int(t, where, 0, limits.vocab_size - 1);
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

std::vector<std::vector<int32_t>> prompts_of(const json& p, const request_limits& limits) {
  if (p.is_string())
    refuse("prompt", "'prompt' is text; cafex-serve has no tokenizer: send a list of token "
                     "ids, or a list of such lists (tokenize on the client, e.g. with Hugging "
                     "Face tokenizers)");
  if (!p.is_array())
    refuse("prompt",
           "'prompt' must be a list of token ids or a list of such lists, got " + type_of(p));
  if (p.empty())
    refuse("prompt", "'prompt' is empty: give at least one token id");
  std::vector<std::vector<int32_t>> out;
  if (p.front().is_array()) {
    for (size_t i = 0; i < p.size(); ++i) {
      auto name = "prompt[" + std::to_string(i) + "]";
      if (!p[i].is_array())
        refuse("prompt", "'prompt' mixes lists and " + type_of(p[i]) + "s: " + name
                           + " must be a list of token ids like the others");
      if (p[i].empty())
        refuse("prompt", "'" + name + "' is empty: give at least one token id");
      out.push_back(token_ids(p[i], name, limits));
    }
  } else {
    out.push_back(token_ids(p, "prompt", limits));
  }
  const int max_prompt = limits.max_seq_len - 1;
  for (size_t i = 0; i < out.size(); ++i)
    if (static_cast<int64_t>(out[i].size()) > max_prompt)
      refuse("prompt", "prompt " + std::to_string(i) + " has " + std::to_string(out[i].size())
                         + " tokens; at most " + std::to_string(max_prompt)
                         + " fit (the model's length limit "
                         + std::to_string(limits.max_seq_len) + " minus one generated token)");
  return out;
}

/// Fields accepted only at their neutral value (null, or the value that changes nothing):
/// anything else is refused, saying so.
void neutral_only(const json& j) {
  auto zero_or_null = [&](const char* name, double neutral, const char* why) {
    auto f = j.find(name);
    if (f == j.end() || f->is_null())
      return;
    if (!f->is_number() || f->get<double>() != neutral)
      refuse(name, std::string("'") + name + "' is not supported (" + why + "); leave it out",
             "unsupported_value");
  };
  zero_or_null("presence_penalty", 0, "no penalties are applied");
  zero_or_null("frequency_penalty", 0, "no penalties are applied");
  zero_or_null("repetition_penalty", 1, "no penalties are applied");
  if (auto f = j.find("logit_bias");
      f != j.end() && !f->is_null() && !(f->is_object() && f->empty()))
    refuse("logit_bias", "'logit_bias' is not supported; leave it out", "unsupported_value");
  if (auto f = j.find("suffix");
      f != j.end() && !f->is_null() && !(f->is_string() && f->get<std::string>().empty()))
    refuse("suffix", "'suffix' (insertion) is not supported; leave it out",
           "unsupported_value");
  if (auto f = j.find("stop"); f != j.end() && !f->is_null() && !(f->is_array() && f->empty()))
    refuse("stop",
           "'stop' strings need a tokenizer, which cafex-serve does not have; use "
           "'stop_token_ids'",
           "unsupported_value");
  if (auto f = j.find("use_beam_search");
      f != j.end() && !f->is_null() && !(f->is_boolean() && !f->get<bool>()))
    refuse("use_beam_search", "beam search is not supported; leave 'use_beam_search' out",
           "unsupported_value");
}

const char* const known_fields[] = {"model",
                                    "prompt",
                                    "max_tokens",
                                    "temperature",
                                    "top_p",
                                    "top_k",
                                    "min_p",
                                    "seed",
                                    "n",
                                    "best_of",
                                    "stop",
                                    "stop_token_ids",
                                    "ignore_eos",
                                    "min_tokens",
                                    "logprobs",
                                    "echo",
                                    "stream",
                                    "stream_options",
                                    "suffix",
                                    "presence_penalty",
                                    "user",
                                    "frequency_penalty",
                                    "repetition_penalty",
                                    "logit_bias",
                                    "use_beam_search",
                                    "return_token_ids"};

completion_request parse(const json& j, const request_limits& limits) {
  if (!j.is_object())
    refuse("", "the body must be a JSON object, got " + type_of(j));
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* k : known_fields)
      known = known || key == k;
    if (!known)
      refuse(key,
             "unsupported field '" + key
               + "': cafex-serve refuses what it would not "
                 "honour (README: cafex-serve, completions)",
             "unsupported_field");
  }
  neutral_only(j);
  auto opt = [&](const char* name) -> const json* {
    auto f = j.find(name);
    return f == j.end() || f->is_null() ? nullptr : &*f;
  };
  completion_request out;
  if (auto* m = opt("model")) {
    if (!m->is_string())
      refuse("model", "'model' must be a string, got " + type_of(*m));
    if (m->get<std::string>() != limits.model_name)
      throw refused{{"the model '" + m->get<std::string>()
                       + "' does not exist; this server "
                         "serves '"
                       + limits.model_name + "' (GET /v1/models)",
                     "model", "model_not_found", 404}};
  }
  auto p = j.find("prompt");
  if (p == j.end() || p->is_null())
    refuse("prompt", "missing field 'prompt' (a list of token ids)", "missing_field");
  out.prompts = prompts_of(*p, limits);

  auto& s = out.sampling;
  s.temperature = limits.default_temperature;
  if (auto* v = opt("temperature"))
    s.temperature = static_cast<float>(get_number(*v, "temperature", 0, 2));
  if (auto* v = opt("top_p"))
    s.top_p = static_cast<float>(get_number(*v, "top_p", 0, 1, true));
  if (auto* v = opt("top_k"))
    s.top_k = static_cast<int32_t>(get_int(*v, "top_k", -1, limits.vocab_size));
  if (auto* v = opt("min_p"))
    s.min_p = static_cast<float>(get_number(*v, "min_p", 0, 1));
  if (auto* v = opt("seed"))
    s.seed = get_int(*v, "seed", 0, INT64_MAX);
  if (auto* v = opt("n"))
    out.n = static_cast<int>(get_int(*v, "n", 1, limits.max_choices));
  if (auto* v = opt("best_of")) {
    auto b = get_int(*v, "best_of", 1, limits.max_choices);
    if (b != out.n)
      refuse("best_of",
             "'best_of' = " + std::to_string(b) + " differs from n = " + std::to_string(out.n)
               + ": ranking candidates is not supported "
                 "(vLLM dropped it too); leave best_of out",
             "unsupported_value");
  }
  if (out.prompts.size() * static_cast<size_t>(out.n)
      > static_cast<size_t>(limits.max_choices))
    refuse("n", std::to_string(out.prompts.size()) + " prompts x n = " + std::to_string(out.n)
                  + " is over " + std::to_string(limits.max_choices)
                  + " choices per request: split the request");
  if (auto* v = opt("stop_token_ids")) {
    if (!v->is_array())
      refuse("stop_token_ids",
             "'stop_token_ids' must be a list of token ids, got " + type_of(*v));
    s.stop_token_ids = token_ids(*v, "stop_token_ids", limits);
  }
  if (auto* v = opt("ignore_eos"))
    s.ignore_eos = get_bool(*v, "ignore_eos");
  if (auto* v = opt("logprobs"))
    s.logprobs = static_cast<int32_t>(get_int(*v, "logprobs", 0, max_logprobs));
  if (auto* v = opt("echo"))
    out.echo = get_bool(*v, "echo");
  if (out.echo && s.logprobs >= 0)
    refuse("echo",
           "'echo' with 'logprobs' asks for the prompt's logprobs, which are not "
           "computed; drop one of them",
           "unsupported_value");
  if (auto* v = opt("stream"))
    out.stream = get_bool(*v, "stream");
  if (auto* v = opt("stream_options")) {
    if (!v->is_object())
      refuse("stream_options", "'stream_options' must be an object, got " + type_of(*v));
    for (const auto& [key, value] : v->items()) {
      if (key != "include_usage")
        refuse("stream_options", "unsupported field 'stream_options." + key + "'",
               "unsupported_field");
      if (!value.is_null())
        out.include_usage = get_bool(value, "stream_options.include_usage");
    }
    if (!out.stream)
      refuse("stream_options", "'stream_options' needs \"stream\": true");
  }
  if (auto* v = opt("return_token_ids"))
    get_bool(*v, "return_token_ids"); // token ids always come back: there is no text
  if (auto* v = opt("user"); v != nullptr && !v->is_string())
    refuse("user", "'user' must be a string, got " + type_of(*v));

  // max_tokens: a number, or null for "up to the model's length limit" (vLLM).
  auto m = j.find("max_tokens");
  size_t longest = 0;
  for (const auto& pr : out.prompts)
    longest = std::max(longest, pr.size());
  const auto room = limits.max_seq_len - static_cast<int>(longest);
  if (m != j.end() && m->is_null()) {
    out.max_tokens_to_context = true;
    s.max_tokens = std::min(room, limits.max_tokens_limit);
  } else if (m != j.end()) {
    s.max_tokens = static_cast<int32_t>(get_int(*m, "max_tokens", 1, limits.max_tokens_limit));
    if (s.max_tokens > room)
      refuse("max_tokens", "the longest prompt (" + std::to_string(longest)
                             + " tokens) plus max_tokens (" + std::to_string(s.max_tokens)
                             + ") exceeds the model's length limit "
                             + std::to_string(limits.max_seq_len)
                             + "; lower max_tokens to at most " + std::to_string(room));
  } else {
    s.max_tokens = std::min(limits.default_max_tokens, room);
  }
  if (auto* v = opt("min_tokens"))
    s.min_tokens = static_cast<int32_t>(get_int(*v, "min_tokens", 0, s.max_tokens));
  return out;
}

} // namespace

sampling_params completion_request::choice_sampling(size_t prompt, int j,
                                                    const request_limits& limits) const {
  sampling_params p = sampling;
  if (p.seed >= 0)
    p.seed = static_cast<int64_t>(static_cast<uint64_t>(p.seed) + static_cast<uint64_t>(j))
             & INT64_MAX;
  if (max_tokens_to_context)
    p.max_tokens = std::min(limits.max_seq_len - static_cast<int>(prompts[prompt].size()),
                            limits.max_tokens_limit);
  return p;
}

std::variant<completion_request, request_error>
parse_completion_request(const std::string& body, const request_limits& limits) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded())
    return request_error{"malformed JSON body: expected an object such as "
                         "{\"prompt\": [1, 2, 3], \"max_tokens\": 16}",
                         "", "invalid_json", 400};
  try {
    return parse(j, limits);
  } catch (const refused& r) {
    return r.err;
  }
}

} // namespace cafex::serve
