#include "completion_request.hpp"

#include <nlohmann/json.hpp>

namespace cafex::serve {

namespace {

using json = nlohmann::json;

std::string type_of(const json& j) {
  return j.type_name(); // "string", "number", "array", "object", "boolean", "null"
}

} // namespace

std::variant<completion_request, request_error>
parse_completion_request(const std::string& body, const request_limits& limits) {
  auto fail = [](std::string m) { return request_error{std::move(m)}; };
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded())
    return fail("malformed JSON body: expected an object such as "
                "{\"prompt\": [1, 2, 3], \"max_tokens\": 16}");
  if (!j.is_object())
    return fail("the body must be a JSON object, got " + type_of(j));
  completion_request out;
  auto p = j.find("prompt");
  if (p == j.end())
    return fail("missing field 'prompt' (an array of token ids)");
  if (!p->is_array())
    return fail("'prompt' must be an array of token ids (integers), got " + type_of(*p));
  if (p->empty())
    return fail("'prompt' is empty: give at least one token id");
  int max_prompt = limits.max_seq_len - 1;
  if (static_cast<int64_t>(p->size()) > max_prompt)
    return fail("'prompt' has " + std::to_string(p->size()) + " tokens; at most "
                + std::to_string(max_prompt) + " fit (max_seq_len "
                + std::to_string(limits.max_seq_len) + " minus one generated token)");
  for (size_t i = 0; i < p->size(); ++i) {
    const auto& t = (*p)[i];
    std::string where = "prompt[" + std::to_string(i) + "]";
    if (!t.is_number_integer())
      return fail(where + " must be an integer token id, got " + type_of(t)
                  + (t.is_number_float() ? " (a non-integer number)" : ""));
    auto v = t.get<int64_t>();
    if (v < 0 || v >= limits.vocab_size)
      return fail(where + " = " + std::to_string(v) + " is outside the vocabulary [0, "
                  + std::to_string(limits.vocab_size) + ")");
    out.prompt.push_back(static_cast<int32_t>(v));
  }
  out.max_tokens = limits.default_max_tokens;
  if (auto m = j.find("max_tokens"); m != j.end()) {
    if (!m->is_number_integer())
      return fail("'max_tokens' must be an integer, got " + type_of(*m));
    auto v = m->get<int64_t>();
    if (v < 1 || v > limits.max_tokens_limit)
      return fail("'max_tokens' = " + std::to_string(v) + " is out of range [1, "
                  + std::to_string(limits.max_tokens_limit) + "]");
    out.max_tokens = static_cast<int>(v);
  }
  auto room = limits.max_seq_len - static_cast<int>(out.prompt.size());
  if (out.max_tokens > room)
    return fail("prompt (" + std::to_string(out.prompt.size()) + " tokens) plus max_tokens ("
                + std::to_string(out.max_tokens) + ") exceeds max_seq_len "
                + std::to_string(limits.max_seq_len) + "; lower max_tokens to at most "
                + std::to_string(room));
  if (auto s = j.find("stream"); s != j.end()) {
    if (!s->is_boolean())
      return fail("'stream' must be true or false, got " + type_of(*s));
    out.stream = s->get<bool>();
  }
  return out;
}

} // namespace cafex::serve
