// The committed Hugging Face fixtures (tests/hf/fixtures, made by tests/hf/make_fixtures.py)
// as the in-process model tests read them: their directories, their expected.json
// (transformers' tokens and top-5 logprobs), and the list of them.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace cafex::test {

inline std::string fixture_dir(const std::string& name) {
  return std::string(CAFEX_SOURCE_DIR) + "/tests/hf/fixtures/" + name;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in{path};
  REQUIRE_MESSAGE(in, "cannot read " << path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

/// Every fixture: GQA, tied + sharded + llama3 rope, Mistral's window, Qwen2's biases in
/// BF16, F16.
inline const char* const hf_fixtures[] = {"llama_gqa", "llama3_tied_sharded", "mistral_window",
                                          "qwen2_bias_bf16", "llama_f16"};

} // namespace cafex::test
