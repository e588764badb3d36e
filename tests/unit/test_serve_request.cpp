// cafex-serve's request validation: every bad body gets a message that says what is wrong.
#include <doctest/doctest.h>

#include "completion_request.hpp"

using namespace cafex::serve;

namespace {

std::string error_of(const std::string& body, request_limits lim = {}) {
  auto r = parse_completion_request(body, lim);
  auto* e = std::get_if<request_error>(&r);
  return e ? e->message : "";
}

} // namespace

TEST_CASE("a valid body parses with defaults for absent fields") {
  auto r = parse_completion_request(R"({"prompt":[1,2,3],"max_tokens":5,"stream":true,"x":1})",
                                    {});
  REQUIRE(std::holds_alternative<completion_request>(r));
  auto& c = std::get<completion_request>(r);
  CHECK(c.prompt == std::vector<int32_t>{1, 2, 3});
  CHECK(c.max_tokens == 5);
  CHECK(c.stream);
  auto d = std::get<completion_request>(parse_completion_request(R"({"prompt":[0]})", {}));
  CHECK(d.max_tokens == 16);
  CHECK_FALSE(d.stream);
}

TEST_CASE("every bad body is refused naming the problem") {
  CHECK(error_of("{\"prompt\": [1,2").find("malformed JSON") != std::string::npos);
  CHECK(error_of("").find("malformed JSON") != std::string::npos);
  CHECK(error_of("[1,2]").find("must be a JSON object, got array") != std::string::npos);
  CHECK(error_of("{}").find("missing field 'prompt'") != std::string::npos);
  CHECK(error_of(R"({"prompt":"hello"})").find("'prompt' must be an array")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[]})").find("'prompt' is empty") != std::string::npos);
  CHECK(error_of(R"({"prompt":[1,"a"]})").find("prompt[1] must be an integer")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[1.5]})").find("non-integer") != std::string::npos);
  CHECK(
    error_of(R"({"prompt":[512]})").find("prompt[0] = 512 is outside the vocabulary [0, 512)")
    != std::string::npos);
  CHECK(error_of(R"({"prompt":[-1]})").find("outside the vocabulary") != std::string::npos);
  CHECK(error_of(R"({"prompt":[1],"max_tokens":"8"})").find("'max_tokens' must be an integer")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[1],"max_tokens":0})").find("out of range [1, 1024]")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[1],"max_tokens":5000})").find("out of range")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[1],"stream":"yes"})").find("'stream' must be true or false")
        != std::string::npos);
  request_limits small;
  small.max_seq_len = 8;
  small.max_tokens_limit = 7;
  CHECK(error_of(R"({"prompt":[1,2,3,4,5],"max_tokens":4})", small)
          .find("lower max_tokens to at most 3")
        != std::string::npos);
  CHECK(error_of(R"({"prompt":[1,2,3,4,5,6,7,8]})", small).find("at most 7 fit")
        != std::string::npos);
}
