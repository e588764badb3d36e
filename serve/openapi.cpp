#include "openapi.hpp"

#include <nlohmann/json.hpp>

#include "runtime/models/sampling.hpp"

namespace cafex::serve {

namespace {

using json = nlohmann::json;

json ref(const char* name) {
  return {{"$ref", std::string("#/components/schemas/") + name}};
}

json json_content(const json& schema) {
  return {{"application/json", {{"schema", schema}}}};
}

json error_response(const char* what) {
  return {{"description", what}, {"content", json_content(ref("Error"))}};
}

json token_list(const request_limits& l, int max_items) {
  return {{"type", "array"},
          {"minItems", 1},
          {"maxItems", max_items},
          {"items", {{"type", "integer"}, {"minimum", 0}, {"maximum", l.vocab_size - 1}}}};
}

json nullable(json schema) {
  schema["nullable"] = true;
  return schema;
}

json completion_request_schema(const request_limits& l) {
  const int max_prompt = l.max_seq_len - 1;
  json props = {
    {"model", {{"type", "string"}, {"enum", {l.model_name}}}},
    {"prompt",
     {{"description", "token ids, or a list of such lists (one choice set each); text needs "
                      "a tokenizer, which this server does not have"},
      {"oneOf",
       {token_list(l, max_prompt),
        {{"type", "array"},
         {"minItems", 1},
         {"maxItems", l.max_choices},
         {"items", token_list(l, max_prompt)}}}}}},
    {"max_tokens", nullable({{"type", "integer"},
                             {"minimum", 1},
                             {"maximum", l.max_tokens_limit},
                             {"description", "null: up to the model's length limit"}})},
    {"temperature", nullable({{"type", "number"}, {"minimum", 0}, {"maximum", 2}})},
    {"top_p",
     nullable(
       {{"type", "number"}, {"minimum", 0}, {"exclusiveMinimum", true}, {"maximum", 1}})},
    {"top_k", nullable({{"type", "integer"}, {"minimum", -1}, {"maximum", l.vocab_size}})},
    {"min_p", nullable({{"type", "number"}, {"minimum", 0}, {"maximum", 1}})},
    {"seed", nullable({{"type", "integer"}, {"minimum", 0}, {"maximum", INT64_MAX}})},
    {"n", nullable({{"type", "integer"}, {"minimum", 1}, {"maximum", l.max_choices}})},
    {"best_of", nullable({{"type", "integer"},
                          {"minimum", 1},
                          {"maximum", l.max_choices},
                          {"description", "accepted only equal to n"}})},
    {"stop_token_ids",
     nullable(
       {{"type", "array"},
        {"items", {{"type", "integer"}, {"minimum", 0}, {"maximum", l.vocab_size - 1}}}})},
    {"ignore_eos", nullable({{"type", "boolean"}})},
    {"min_tokens", nullable({{"type", "integer"},
                             {"minimum", 0},
                             {"maximum", l.max_tokens_limit},
                             {"description", "at most max_tokens"}})},
    {"logprobs", nullable({{"type", "integer"}, {"minimum", 0}, {"maximum", max_logprobs}})},
    {"echo",
     nullable({{"type", "boolean"},
               {"description", "the prompt's ids come back in prompt_token_ids; not with "
                               "logprobs"}})},
    {"stream", nullable({{"type", "boolean"}})},
    {"stream_options",
     nullable({{"type", "object"},
               {"additionalProperties", false},
               {"properties", {{"include_usage", nullable({{"type", "boolean"}})}}},
               {"description", "only with stream: true"}})},
    {"return_token_ids", nullable({{"type", "boolean"}})},
    {"user", nullable({{"type", "string"}})},
    {"suffix", nullable({{"type", "string"}, {"maxLength", 0}})},
    {"stop", nullable({{"type", "array"}, {"maxItems", 0}, {"items", {{"type", "string"}}}})},
    {"presence_penalty", nullable({{"type", "number"}, {"enum", {0}}})},
    {"frequency_penalty", nullable({{"type", "number"}, {"enum", {0}}})},
    {"repetition_penalty", nullable({{"type", "number"}, {"enum", {1}}})},
    {"logit_bias", nullable({{"type", "object"}, {"maxProperties", 0}})},
    {"use_beam_search", nullable({{"type", "boolean"}, {"enum", {false}}})},
  };
  return {{"type", "object"},
          {"required", {"prompt"}},
          {"additionalProperties", false},
          {"properties", props}};
}

json logprobs_schema() {
  return nullable(
    {{"type", "object"},
     {"properties",
      {{"tokens", {{"type", "array"}, {"items", {{"type", "string"}}}}},
       {"token_logprobs", {{"type", "array"}, {"items", {{"type", "number"}}}}},
       {"top_logprobs",
        {{"type", "array"},
         {"items", {{"type", "object"}, {"additionalProperties", {{"type", "number"}}}}}}},
       {"text_offset", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}}});
}

json choice_schema(bool stream) {
  json finish = {{"type", "string"}, {"enum", {"stop", "length"}}};
  return {{"type", "object"},
          {"required", {"index", "text", "token_ids", "logprobs", "finish_reason"}},
          {"properties",
           {{"index", {{"type", "integer"}, {"minimum", 0}}},
            {"text", {{"type", "string"}}},
            {"token_ids", {{"type", "array"}, {"items", {{"type", "integer"}}}}},
            {"prompt_token_ids", {{"type", "array"}, {"items", {{"type", "integer"}}}}},
            {"logprobs", logprobs_schema()},
            {"finish_reason", stream ? nullable(finish) : finish}}}};
}

json usage_schema() {
  json n = {{"type", "integer"}, {"minimum", 0}};
  return {{"type", "object"},
          {"required", {"prompt_tokens", "completion_tokens", "total_tokens"}},
          {"properties",
           {{"prompt_tokens", n}, {"completion_tokens", n}, {"total_tokens", n}}}};
}

json model_schema() {
  return {{"type", "object"},
          {"required", {"id", "object", "created", "owned_by"}},
          {"properties",
           {{"id", {{"type", "string"}}},
            {"object", {{"type", "string"}, {"enum", {"model"}}}},
            {"created", {{"type", "integer"}}},
            {"owned_by", {{"type", "string"}}},
            {"root", {{"type", "string"}}},
            {"max_model_len", {{"type", "integer"}}}}}};
}

} // namespace

std::string openapi_document(const request_limits& l, bool api_key) {
  json schemas = {
    {"CompletionRequest", completion_request_schema(l)},
    {"CompletionChoice", choice_schema(false)},
    {"CompletionStreamChoice", choice_schema(true)},
    {"Usage", usage_schema()},
    {"CompletionResponse",
     {{"type", "object"},
      {"required", {"id", "object", "created", "model", "choices", "usage"}},
      {"properties",
       {{"id", {{"type", "string"}}},
        {"object", {{"type", "string"}, {"enum", {"text_completion"}}}},
        {"created", {{"type", "integer"}}},
        {"model", {{"type", "string"}}},
        {"choices", {{"type", "array"}, {"items", ref("CompletionChoice")}}},
        {"usage", ref("Usage")}}}}},
    {"CompletionChunk",
     {{"type", "object"},
      {"description", "one server-sent event's data (the stream ends with data: [DONE])"},
      {"required", {"id", "object", "created", "model", "choices"}},
      {"properties",
       {{"id", {{"type", "string"}}},
        {"object", {{"type", "string"}, {"enum", {"text_completion"}}}},
        {"created", {{"type", "integer"}}},
        {"model", {{"type", "string"}}},
        {"choices", {{"type", "array"}, {"items", ref("CompletionStreamChoice")}}},
        {"usage", nullable(ref("Usage"))}}}}},
    {"Model", model_schema()},
    {"ModelList",
     {{"type", "object"},
      {"required", {"object", "data"}},
      {"properties",
       {{"object", {{"type", "string"}, {"enum", {"list"}}}},
        {"data", {{"type", "array"}, {"items", ref("Model")}}}}}}},
    {"Error",
     {{"type", "object"},
      {"required", {"error"}},
      {"properties",
       {{"error",
         {{"type", "object"},
          {"required", {"message", "type", "param", "code"}},
          {"properties",
           {{"message", {{"type", "string"}}},
            {"type", {{"type", "string"}}},
            {"param", nullable({{"type", "string"}})},
            {"code", {{"type", "string"}}}}}}}}}}},
    {"Health",
     {{"type", "object"},
      {"required", {"status", "workers"}},
      {"properties",
       {{"status",
         {{"type", "string"}, {"enum", {"healthy", "recovering", "degraded", "failed"}}}},
        {"reason", {{"type", "string"}}},
        {"workers",
         {{"type", "array"},
          {"items",
           {{"type", "object"},
            {"properties",
             {{"rank", {{"type", "integer"}}},
              {"node", {{"type", "string"}}},
              {"state", {{"type", "string"}}}}}}}}}}}}},
  };
  json common = {{"401", error_response("missing or wrong API key (--api-key)")},
                 {"405",
                  error_response("wrong method (the Allow header names the right one)")},
                 {"413", error_response("body over --max-body-bytes")},
                 {"431", error_response("headers too large")}};
  auto with_common = [&](json responses) {
    for (auto& [code, r] : common.items())
      if (!responses.contains(code))
        responses[code] = r;
    return responses;
  };
  json security = api_key ? json::array({{{"bearer", json::array()}}}) : json::array();
  json completions = {
    {"post",
     {{"operationId", "createCompletion"},
      {"summary", "Completions of token-id prompts (OpenAI's completions API)"},
      {"security", security},
      {"requestBody",
       {{"required", true}, {"content", json_content(ref("CompletionRequest"))}}},
      {"responses",
       with_common(
         {{"200",
           {{"description", "the completion, or (stream: true) its chunks as "
                            "server-sent events"},
            {"content",
             {{"application/json", {{"schema", ref("CompletionResponse")}}},
              {"text/event-stream",
               {{"schema",
                 {{"type", "object"},
                  {"description", "each server-sent event: data is a "
                                  "CompletionChunk, an Error, or [DONE]"},
                  {"properties",
                   {{"data", {{"type", "string"}}}, {"event", {{"type", "string"}}}}}}}}}}}}},
          {"400", error_response("the request is invalid (the message names the "
                                 "field)")},
          {"404", error_response("the model named is not served")},
          {"500", error_response("the model failed this request")},
          {"503", error_response("queue full, recovering or shutting down "
                                 "(Retry-After says when to retry)")},
          {"504", error_response("a step passed its deadline")}})}}}};
  json models = {
    {"get",
     {{"operationId", "listModels"},
      {"security", security},
      {"responses", with_common({{"200",
                                  {{"description", "the served model"},
                                   {"content", json_content(ref("ModelList"))}}}})}}}};
  json model = {{"get",
                 {{"operationId", "retrieveModel"},
                  {"security", security},
                  {"parameters",
                   {{{"name", "model"},
                     {"in", "path"},
                     {"required", true},
                     {"schema", {{"type", "string"}}}}}},
                  {"responses", with_common({{"200",
                                              {{"description", "the served model"},
                                               {"content", json_content(ref("Model"))}}},
                                             {"404", error_response("no such model")}})}}}};
  json health = {{"get",
                  {{"operationId", "health"},
                   {"security", json::array()},
                   {"responses",
                    {{"200",
                      {{"description", "healthy or recovering: requests are served"},
                       {"content", json_content(ref("Health"))}}},
                     {"405", error_response("wrong method")},
                     {"503",
                      {{"description", "degraded or failed: requests fail"},
                       {"content", json_content(ref("Health"))}}}}}}}};
  json metrics = {
    {"get",
     {{"operationId", "metrics"},
      {"security", security},
      {"responses",
       with_common(
         {{"200",
           {{"description", "Prometheus text format 0.0.4"},
            {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}})}}}};
  json spec = {
    {"get",
     {{"operationId", "openapi"},
      {"security", security},
      {"responses", with_common({{"200",
                                  {{"description", "this document"},
                                   {"content", json_content({{"type", "object"}})}}}})}}}};
  json doc = {{"openapi", "3.0.3"},
              {"info",
               {{"title", "cafex-serve"},
                {"version", "1"},
                {"description", "OpenAI-compatible completions on the cafex executor"}}},
              {"paths",
               {{"/v1/completions", completions},
                {"/v1/models", models},
                {"/v1/models/{model}", model},
                {"/health", health},
                {"/metrics", metrics},
                {"/openapi.json", spec}}},
              {"components",
               {{"schemas", schemas},
                {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}}};
  return doc.dump();
}

} // namespace cafex::serve
