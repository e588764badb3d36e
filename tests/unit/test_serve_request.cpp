// cafex-serve's request validation (OpenAI's completions body): every bad body gets a
// message that says what is wrong and names the field; nothing is silently ignored.
#include <doctest/doctest.h>

#include "completion_request.hpp"

using namespace cafex::serve;

namespace {

request_error error_of(const std::string& body, request_limits lim = {}) {
  auto r = parse_completion_request(body, lim);
  auto* e = std::get_if<request_error>(&r);
  return e ? *e : request_error{"", "", "", 0};
}

bool refused(const std::string& body, const std::string& param, const std::string& words,
             request_limits lim = {}) {
  auto e = error_of(body, lim);
  bool ok = e.status >= 400 && e.param == param && e.message.find(words) != std::string::npos;
  if (!ok)
    MESSAGE(body << " -> status " << e.status << " param '" << e.param << "': " << e.message);
  return ok;
}

completion_request ok(const std::string& body, request_limits lim = {}) {
  auto r = parse_completion_request(body, lim);
  if (auto* e = std::get_if<request_error>(&r))
    FAIL(body << " refused: " << e->message);
  return std::get<completion_request>(r);
}

} // namespace

TEST_CASE("a valid body parses with OpenAI's defaults for absent fields") {
  auto c = ok(R"({"prompt":[1,2,3],"max_tokens":5,"stream":true})");
  REQUIRE(c.prompts.size() == 1);
  CHECK(c.prompts[0] == std::vector<int32_t>{1, 2, 3});
  CHECK(c.sampling.max_tokens == 5);
  CHECK(c.stream);
  CHECK(c.n == 1);
  auto d = ok(R"({"prompt":[0]})");
  CHECK(d.sampling.max_tokens == 16);
  CHECK(d.sampling.temperature == 1.0f); // OpenAI's default
  CHECK(d.sampling.seed == -1);
  CHECK(d.sampling.logprobs == -1);
  CHECK_FALSE(d.stream);
  CHECK_FALSE(d.echo);
}

TEST_CASE(
  "sampling fields reach the sampling parameters; n and seeds give each choice its own") {
  auto c = ok(R"({"model":"cafex","prompt":[[1,2],[3]],"n":2,"temperature":0.5,"top_p":0.9,
    "top_k":5,"min_p":0.1,"seed":7,"stop_token_ids":[4],"ignore_eos":true,"min_tokens":2,
    "max_tokens":8,"logprobs":3,"stream":true,"stream_options":{"include_usage":true},
    "best_of":2,"user":"u1","presence_penalty":0,"frequency_penalty":0.0,"stop":[],
    "suffix":null,"logit_bias":{}})");
  CHECK(c.prompts.size() == 2);
  CHECK(c.n == 2);
  CHECK(c.sampling.temperature == doctest::Approx(0.5));
  CHECK(c.sampling.top_p == doctest::Approx(0.9));
  CHECK(c.sampling.top_k == 5);
  CHECK(c.sampling.min_p == doctest::Approx(0.1));
  CHECK(c.sampling.stop_token_ids == std::vector<int32_t>{4});
  CHECK(c.sampling.ignore_eos);
  CHECK(c.sampling.min_tokens == 2);
  CHECK(c.sampling.logprobs == 3);
  CHECK(c.include_usage);
  request_limits lim;
  CHECK(c.choice_sampling(0, 0, lim).seed == 7);
  CHECK(c.choice_sampling(1, 1, lim).seed == 8); // seed + j, vLLM's rule for n > 1
  auto unseeded = ok(R"({"prompt":[1],"n":3})");
  CHECK(unseeded.choice_sampling(0, 2, lim).seed == -1); // each derives one from its id
}

TEST_CASE("max_tokens null runs up to the model's length limit, within --max-tokens-limit") {
  request_limits lim;
  lim.max_seq_len = 10;
  lim.max_tokens_limit = 9;
  auto c = ok(R"({"prompt":[[1,2,3],[1]],"max_tokens":null})", lim);
  CHECK(c.max_tokens_to_context);
  CHECK(c.choice_sampling(0, 0, lim).max_tokens == 7);
  CHECK(c.choice_sampling(1, 0, lim).max_tokens == 9);
}

TEST_CASE("every bad body is refused naming the field") {
  CHECK(error_of("{\"prompt\": [1,2").code == "invalid_json");
  CHECK(error_of("").message.find("malformed JSON") != std::string::npos);
  CHECK(refused("[1,2]", "", "must be a JSON object, got array"));
  CHECK(refused("{}", "prompt", "missing field 'prompt'"));
  CHECK(refused(R"({"prompt":"hello"})", "prompt", "no tokenizer"));
  CHECK(refused(R"({"prompt":["a","b"]})", "prompt", "no tokenizer"));
  CHECK(refused(R"({"prompt":{}})", "prompt", "got object"));
  CHECK(refused(R"({"prompt":[]})", "prompt", "'prompt' is empty"));
  CHECK(refused(R"({"prompt":[[1],[]]})", "prompt", "'prompt[1]' is empty"));
  CHECK(refused(R"({"prompt":[[1],2]})", "prompt", "mixes lists"));
  CHECK(refused(R"({"prompt":[1.5]})", "prompt[0]", "must be an integer"));
  CHECK(refused(R"({"prompt":[512]})", "prompt[0]", "out of range [0, 511]"));
  CHECK(refused(R"({"prompt":[-1]})", "prompt[0]", "out of range"));
  CHECK(refused(R"({"prompt":[1],"max_tokens":"8"})", "max_tokens", "must be an integer"));
  CHECK(refused(R"({"prompt":[1],"max_tokens":0})", "max_tokens", "out of range [1, 1024]"));
  CHECK(refused(R"({"prompt":[1],"max_tokens":5000})", "max_tokens", "out of range"));
  CHECK(refused(R"({"prompt":[1],"stream":"yes"})", "stream", "must be true or false"));
  CHECK(refused(R"({"prompt":[1],"temperature":-1})", "temperature", "out of range [0, 2]"));
  CHECK(refused(R"({"prompt":[1],"temperature":"hot"})", "temperature", "must be a number"));
  CHECK(refused(R"({"prompt":[1],"top_p":0})", "top_p", "out of range (0, 1]"));
  CHECK(refused(R"({"prompt":[1],"top_p":5e-324})", "top_p", "out of range")); // 0 as float
  CHECK(refused(R"({"prompt":[1],"min_p":1.5})", "min_p", "out of range"));
  CHECK(refused(R"({"prompt":[1],"top_k":-2})", "top_k", "out of range"));
  CHECK(refused(R"({"prompt":[1],"logprobs":21})", "logprobs", "out of range [0, 20]"));
  CHECK(refused(R"({"prompt":[1],"n":0})", "n", "out of range"));
  CHECK(refused(R"({"prompt":[1],"n":2,"best_of":3})", "best_of", "differs from n"));
  CHECK(refused(R"({"prompt":[1],"min_tokens":20,"max_tokens":4})", "min_tokens",
                "out of range [0, 4]"));
  CHECK(
    refused(R"({"prompt":[1],"stop_token_ids":[600]})", "stop_token_ids[0]", "out of range"));
  CHECK(refused(R"({"prompt":[1],"stop":["\n"]})", "stop", "use 'stop_token_ids'"));
  CHECK(refused(R"({"prompt":[1],"stop":"x"})", "stop", "tokenizer"));
  CHECK(refused(R"({"prompt":[1],"suffix":"abc"})", "suffix", "not supported"));
  CHECK(
    refused(R"({"prompt":[1],"presence_penalty":0.5})", "presence_penalty", "not supported"));
  CHECK(refused(R"({"prompt":[1],"logit_bias":{"5":1}})", "logit_bias", "not supported"));
  CHECK(refused(R"({"prompt":[1],"echo":true,"logprobs":1})", "echo", "prompt's logprobs"));
  CHECK(refused(R"({"prompt":[1],"stream_options":{"include_usage":true}})", "stream_options",
                "needs \"stream\": true"));
  CHECK(refused(R"({"prompt":[1],"stream":true,"stream_options":{"x":1}})", "stream_options",
                "stream_options.x"));
  CHECK(refused(R"({"prompt":[1],"frobnicate":1})", "frobnicate", "unsupported field"));
  CHECK(error_of(R"({"prompt":[1],"frobnicate":1})").code == "unsupported_field");
  auto wrong_model = error_of(R"({"prompt":[1],"model":"gpt-4"})");
  CHECK(wrong_model.status == 404);
  CHECK(wrong_model.code == "model_not_found");
  request_limits small;
  small.max_seq_len = 8;
  small.max_tokens_limit = 7;
  CHECK(refused(R"({"prompt":[1,2,3,4,5],"max_tokens":4})", "max_tokens",
                "lower max_tokens to at most 3", small));
  CHECK(refused(R"({"prompt":[1,2,3,4,5,6,7,8]})", "prompt", "at most 7 fit", small));
  small.max_choices = 4;
  CHECK(refused(R"({"prompt":[[1],[2],[3]],"n":2})", "n", "choices per request", small));
}

TEST_CASE("numbers outside int64 are refused, never wrapped") {
  CHECK(refused(R"({"prompt":[1],"seed":18446744073709551615})", "seed",
                "outside the 64-bit integer range"));
  CHECK(refused(R"({"prompt":[1],"seed":1e30})", "seed", "must be an integer"));
  CHECK(refused(R"({"prompt":[1],"seed":-5})", "seed", "out of range"));
  CHECK(refused(R"({"prompt":[9223372036854775808]})", "prompt[0]", "64-bit"));
  CHECK(refused(R"({"prompt":[1],"max_tokens":99999999999999999999})", "max_tokens",
                "must be an integer"));
  CHECK(ok(R"({"prompt":[1],"seed":9223372036854775807})").sampling.seed == INT64_MAX);
}
