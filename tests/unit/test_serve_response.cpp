// cafex-serve's answers in OpenAI's shapes: the response object, stream chunks, usage,
// logprobs, errors, the models list and the OpenAPI document.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "completion_response.hpp"
#include "openapi.hpp"

using namespace cafex;
using namespace cafex::serve;
using json = nlohmann::json;

namespace {

completion_request two_prompts(bool stream, int n) {
  completion_request r;
  r.prompts = {{1, 2, 3}, {4}};
  r.n = n;
  r.stream = stream;
  return r;
}

json data_of(const std::string& event) {
  REQUIRE(event.rfind("data: ", 0) == 0);
  REQUIRE(event.size() > 8);
  CHECK(event.substr(event.size() - 2) == "\n\n");
  return json::parse(event.substr(6, event.size() - 8));
}

} // namespace

TEST_CASE("the response has one choice per prompt x n, tokens in token_ids, usage counted "
          "once per prompt") {
  auto req = two_prompts(false, 2);
  completion_job job{req, "cmpl-x", "m", 42};
  REQUIRE(job.choices() == 4);
  CHECK(job.prompt_of(3) == std::vector<int32_t>{4});
  CHECK(job.token(0, 7, nullptr, "").empty());
  job.token(0, 8, nullptr, "stop");
  job.token(1, 9, nullptr, "length");
  job.token(2, 5, nullptr, "length");
  job.token(3, 6, nullptr, "length");
  CHECK_FALSE(job.choice_done(0));
  CHECK_FALSE(job.choice_done(1));
  CHECK_FALSE(job.choice_done(2));
  CHECK(job.choice_done(3));
  auto j = json::parse(job.body());
  CHECK(j["id"] == "cmpl-x");
  CHECK(j["object"] == "text_completion");
  CHECK(j["created"] == 42);
  CHECK(j["model"] == "m");
  REQUIRE(j["choices"].size() == 4);
  CHECK(j["choices"][0]["index"] == 0);
  CHECK(j["choices"][0]["text"] == "");
  CHECK(j["choices"][0]["token_ids"] == json::array({7, 8}));
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK(j["choices"][0]["logprobs"].is_null());
  CHECK(j["choices"][3]["index"] == 3);
  CHECK_FALSE(j["choices"][0].contains("prompt_token_ids"));
  CHECK(j["usage"]["prompt_tokens"] == 4);
  CHECK(j["usage"]["completion_tokens"] == 5);
  CHECK(j["usage"]["total_tokens"] == 9);
}

TEST_CASE("logprobs come in OpenAI's completions shape with token_id:N names") {
  completion_request req;
  req.prompts = {{1}};
  req.sampling.logprobs = 2;
  req.echo = true;
  completion_job job{req, "cmpl-y", "m", 1};
  token_logprobs lp;
  lp.token = 5;
  lp.logprob = -0.5f;
  lp.top_ids = {5, 9};
  lp.top_logprobs = {-0.5f, -1.5f};
  job.token(0, 5, &lp, "length");
  CHECK(job.choice_done(0));
  auto c = json::parse(job.body())["choices"][0];
  CHECK(c["prompt_token_ids"] == json::array({1}));
  CHECK(c["logprobs"]["tokens"] == json::array({"token_id:5"}));
  CHECK(c["logprobs"]["token_logprobs"][0] == doctest::Approx(-0.5));
  CHECK(c["logprobs"]["top_logprobs"][0]["token_id:9"] == doctest::Approx(-1.5));
  CHECK(c["logprobs"]["text_offset"] == json::array({0}));
}

TEST_CASE("streaming: one text_completion chunk per token, finish_reason on the last, usage "
          "chunk when asked, then [DONE]; no final object repeats the tokens") {
  auto req = two_prompts(true, 1);
  req.include_usage = true;
  req.echo = true;
  completion_job job{req, "cmpl-z", "m", 3};
  auto first = data_of(job.token(1, 11, nullptr, ""));
  CHECK(first["object"] == "text_completion");
  CHECK(first["id"] == "cmpl-z");
  REQUIRE(first["choices"].size() == 1);
  CHECK(first["choices"][0]["index"] == 1);
  CHECK(first["choices"][0]["token_ids"] == json::array({11}));
  CHECK(first["choices"][0]["finish_reason"].is_null());
  CHECK(first["choices"][0]["prompt_token_ids"] == json::array({4}));
  CHECK(first.contains("usage"));
  CHECK(first["usage"].is_null());
  auto last = data_of(job.token(1, 12, nullptr, "stop"));
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  CHECK_FALSE(last["choices"][0].contains("prompt_token_ids"));
  job.token(0, 13, nullptr, "length");
  job.choice_done(1);
  CHECK(job.choice_done(0));
  auto end = job.stream_end();
  auto cut = end.find("\n\n");
  REQUIRE(cut != std::string::npos);
  auto usage = data_of(end.substr(0, cut + 2));
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["completion_tokens"] == 3);
  CHECK(usage["usage"]["prompt_tokens"] == 4);
  CHECK(end.substr(cut + 2) == "data: [DONE]\n\n");
  req.include_usage = false;
  completion_job plain{req, "cmpl-w", "m", 3};
  CHECK(plain.stream_end() == "data: [DONE]\n\n");
}

TEST_CASE("errors have OpenAI's shape with a string code; ids are fresh") {
  auto e = json::parse(openai_error(400, "bad top_p", "invalid_value", "top_p"));
  CHECK(e["error"]["message"] == "bad top_p");
  CHECK(e["error"]["type"] == "invalid_request_error");
  CHECK(e["error"]["param"] == "top_p");
  CHECK(e["error"]["code"] == "invalid_value");
  auto s = json::parse(openai_error(503, "full", "queue_full"));
  CHECK(s["error"]["type"] == "server_error");
  CHECK(s["error"]["param"].is_null());
  auto a = new_completion_id(), b = new_completion_id();
  CHECK(a.rfind("cmpl-", 0) == 0);
  CHECK(a.size() == 5 + 24);
  CHECK(a != b);
  auto m = json::parse(models_list("llama", 5, 2048));
  CHECK(m["object"] == "list");
  CHECK(m["data"][0]["id"] == "llama");
  CHECK(m["data"][0]["object"] == "model");
  CHECK(m["data"][0]["max_model_len"] == 2048);
}

TEST_CASE("the OpenAPI document describes every route with the server's limits") {
  request_limits lim;
  lim.vocab_size = 100;
  lim.model_name = "llama";
  auto doc = json::parse(openapi_document(lim, true));
  CHECK(doc["openapi"] == "3.0.3");
  for (const char* route : {"/v1/completions", "/v1/models", "/v1/models/{model}", "/health",
                            "/metrics", "/openapi.json"})
    CHECK_MESSAGE(doc["paths"].contains(route), route);
  auto req = doc["components"]["schemas"]["CompletionRequest"];
  CHECK(req["additionalProperties"] == false);
  CHECK(req["properties"]["prompt"]["oneOf"][0]["items"]["maximum"] == 99);
  CHECK(req["properties"]["model"]["enum"] == json::array({"llama"}));
  CHECK(req["properties"]["presence_penalty"]["enum"] == json::array({0}));
  auto post = doc["paths"]["/v1/completions"]["post"];
  CHECK(post["security"] == json::parse(R"([{"bearer": []}])"));
  CHECK(post["responses"].contains("503"));
  CHECK(doc["paths"]["/health"]["get"]["security"].empty());
  auto open = json::parse(openapi_document(lim, false));
  CHECK(open["paths"]["/v1/completions"]["post"]["security"].empty());
}
