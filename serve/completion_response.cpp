#include "completion_response.hpp"

#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace cafex::serve {

namespace {

using json = nlohmann::json;

std::string token_name(int32_t id) {
  return "token_id:" + std::to_string(id);
}

// OpenAI's completions logprobs object over `lps` (one per token).
json logprobs_json(const std::vector<token_logprobs>& lps) {
  json tokens = json::array(), values = json::array(), tops = json::array(),
       offsets = json::array();
  for (const auto& lp : lps) {
    tokens.push_back(token_name(lp.token));
    values.push_back(lp.logprob);
    json top = json::object();
    for (size_t k = 0; k < lp.top_ids.size(); ++k)
      top[token_name(lp.top_ids[k])] = lp.top_logprobs[k];
    tops.push_back(std::move(top));
    offsets.push_back(0); // no text: every token starts at offset 0 of ""
  }
  return {{"tokens", tokens},
          {"token_logprobs", values},
          {"top_logprobs", tops},
          {"text_offset", offsets}};
}

json usage_json(uint64_t prompt, uint64_t completion) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

} // namespace

std::string openai_error(int status, const std::string& message, const std::string& code,
                         const std::string& param) {
  return json{{"error",
               {{"message", message},
                {"type", status < 500 ? "invalid_request_error" : "server_error"},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code}}}}
    .dump();
}

std::string models_list(const std::string& model, int64_t created, int64_t max_model_len) {
  return json{{"object", "list"},
              {"data",
               {{{"id", model},
                 {"object", "model"},
                 {"created", created},
                 {"owned_by", "cafex"},
                 {"root", model},
                 {"max_model_len", max_model_len}}}}}
    .dump();
}

completion_job::completion_job(const completion_request& req, std::string id,
                               std::string model, int64_t created)
  : id_(std::move(id)),
    model_(std::move(model)),
    created_(created),
    stream_(req.stream),
    include_usage_(req.include_usage),
    echo_(req.echo),
    want_logprobs_(req.sampling.logprobs >= 0),
    prompts_(req.prompts) {
  for (size_t i = 0; i < prompts_.size(); ++i) {
    // Usage counts each prompt once, whatever n (vLLM's and OpenAI's rule).
    prompt_tokens_ += prompts_[i].size();
    for (int j = 0; j < req.n; ++j) {
      choice c;
      c.prompt = i;
      choices_.push_back(std::move(c));
    }
  }
}

const std::vector<int32_t>& completion_job::prompt_of(size_t c) const {
  return prompts_[choices_[c].prompt];
}

std::string completion_job::token(size_t c, int32_t token, const token_logprobs* lp,
                                  const char* finish) {
  auto& ch = choices_[c];
  ++completion_tokens_;
  if (!stream_) {
    ch.tokens.push_back(token);
    if (want_logprobs_ && lp != nullptr)
      ch.logprobs.push_back(*lp);
    ch.finish = finish;
    return {};
  }
  json choice = {{"index", c},
                 {"text", ""},
                 {"token_ids", {token}},
                 {"logprobs", nullptr},
                 {"finish_reason", *finish != '\0' ? json(finish) : json(nullptr)}};
  if (want_logprobs_ && lp != nullptr)
    choice["logprobs"] = logprobs_json({*lp});
  if (echo_ && !ch.first_sent) // the prompt rides on the choice's first chunk (vLLM's way)
    choice["prompt_token_ids"] = prompts_[ch.prompt];
  ch.first_sent = true;
  json chunk = {{"id", id_},
                {"object", "text_completion"},
                {"created", created_},
                {"model", model_},
                {"choices", json::array({std::move(choice)})}};
  if (include_usage_)
    chunk["usage"] = nullptr;
  return "data: " + chunk.dump() + "\n\n";
}

bool completion_job::choice_done(size_t c) {
  if (!choices_[c].done) {
    choices_[c].done = true;
    ++done_;
  }
  return done_ == choices_.size();
}

std::string completion_job::body() const {
  json out = json::array();
  for (size_t c = 0; c < choices_.size(); ++c) {
    const auto& ch = choices_[c];
    json choice = {{"index", c},
                   {"text", ""},
                   {"token_ids", ch.tokens},
                   {"logprobs", want_logprobs_ ? logprobs_json(ch.logprobs) : json(nullptr)},
                   {"finish_reason", ch.finish.empty() ? json("length") : json(ch.finish)}};
    if (echo_)
      choice["prompt_token_ids"] = prompts_[ch.prompt];
    out.push_back(std::move(choice));
  }
  return json{{"id", id_},
              {"object", "text_completion"},
              {"created", created_},
              {"model", model_},
              {"choices", std::move(out)},
              {"usage", usage_json(prompt_tokens_, completion_tokens_)}}
    .dump();
}

std::string completion_job::stream_end() const {
  std::string out;
  if (include_usage_)
    out = "data: "
          + json{{"id", id_},
                 {"object", "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"choices", json::array()},
                 {"usage", usage_json(prompt_tokens_, completion_tokens_)}}
              .dump()
          + "\n\n";
  return out + "data: [DONE]\n\n";
}

std::string new_completion_id() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  return fmt::format("cmpl-{:016x}{:08x}", gen(), static_cast<uint32_t>(gen()));
}

} // namespace cafex::serve
