// `cafex generate` end to end with real worker processes, on the committed checkpoints
// (tests/hf/fixtures, made by tests/hf/make_fixtures.py with transformers): every fixture
// at (1,1), (2,1), (1,2), (2,2) against transformers' greedy tokens (equal at (1,1), else
// vLLM's top-5 rule), seeded sampling reproduced across shapes and batches, stop tokens,
// EOS, a KV budget exhausted mid-run, bad flags and bad checkpoints.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "processes.hpp"

using namespace cafex;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return std::string(CAFEX_SOURCE_DIR) + "/tests/hf/fixtures/" + name;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in{path};
  REQUIRE_MESSAGE(in, "cannot read " << path);
  return nlohmann::json::parse(in);
}

std::string ids(const std::vector<int32_t>& v) {
  std::string s;
  for (auto t : v)
    s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

test::command_result generate(const std::vector<std::string>& extra) {
  std::vector<std::string> argv{test::binary_from_env("CAFEX_BIN"), "generate", "--log-level",
                                "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::run_command(argv, 120s);
}

nlohmann::json generate_json(const std::vector<std::string>& extra) {
  auto args = extra;
  args.emplace_back("--json");
  auto r = generate(args);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  // The JSON object is the last line of stdout.
  auto text = r.out.substr(0, r.out.find_last_not_of('\n') + 1);
  return nlohmann::json::parse(text.substr(text.rfind('\n') + 1));
}

/// Prompts of a fixture's expected.json as --prompt-ids flags.
std::vector<std::string> prompt_flags(const nlohmann::json& expected) {
  std::vector<std::string> out;
  for (const auto& p : expected["prompts"]) {
    out.emplace_back("--prompt-ids");
    out.push_back(ids(p.get<std::vector<int32_t>>()));
  }
  return out;
}

/// A copy of a fixture to edit, removed at the end.
struct scratch {
  fs::path dir;
  explicit scratch(const std::string& name) {
    std::string tmpl = (fs::temp_directory_path() / "cafex-gen-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
    fs::copy(fixture(name), dir, fs::copy_options::recursive);
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

/// One `error:` line and exit 2, mentioning `part`.
void bad_flags(const std::vector<std::string>& args, const std::string& part) {
  auto r = generate(args);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("error: ", 0) == 0);
  CHECK(r.err.find('\n') == r.err.size() - 1);
  CHECK(r.err.find(part) != std::string::npos);
}

} // namespace

TEST_CASE("every fixture gives transformers' greedy tokens at every TP x PP shape") {
  test::become_subreaper();
  for (const char* name : {"llama_gqa", "llama3_tied_sharded", "mistral_window",
                           "qwen2_bias_bf16", "llama_f16"}) {
    auto expected = read_json(fixture(name) + "/expected.json");
    const auto max_new = std::to_string(expected["max_new_tokens"].get<int>());
    for (auto [tp, pp] : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
      CAPTURE(name);
      CAPTURE(tp);
      CAPTURE(pp);
      std::vector<std::string> args{"--model",          fixture(name), "--tp",
                                    std::to_string(tp), "--pp",        std::to_string(pp),
                                    "--max-tokens",     max_new,       "--ignore-eos"};
      auto p = prompt_flags(expected);
      args.insert(args.end(), p.begin(), p.end());
      auto j = generate_json(args);
      CHECK(j["tp"] == tp);
      CHECK(j["pp"] == pp);
      REQUIRE(j["outputs"].size() == expected["outputs"].size());
      for (size_t i = 0; i < j["outputs"].size(); ++i) {
        const auto got = j["outputs"][i]["token_ids"].get<std::vector<int32_t>>();
        const auto& want = expected["outputs"][i];
        const auto tokens = want["token_ids"].get<std::vector<int32_t>>();
        CHECK(j["outputs"][i]["finish_reason"] == "length");
        CHECK(j["outputs"][i]["prompt_ids"] == expected["prompts"][i]);
        REQUIRE(got.size() == tokens.size());
        for (size_t k = 0; k < got.size(); ++k) {
          if (got[k] == tokens[k])
            continue;
          INFO("prompt " << i << " position " << k << ": cafex " << got[k] << ", transformers "
                         << tokens[k]);
          CHECK_MESSAGE((tp != 1 || pp != 1), "float32 at (1,1) must equal transformers");
          bool in_top = false;
          for (const auto& e : want["top"][k])
            in_top = in_top || e[0].get<int32_t>() == got[k];
          CHECK(in_top);
          break;
        }
      }
    }
  }
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    3s));
}

TEST_CASE("a seed gives the same sampled tokens whatever the shape and the batch") {
  const std::vector<std::string> sampling{"--model",       fixture("qwen2_bias_bf16"),
                                          "--temperature", "0.9",
                                          "--top-p",       "0.95",
                                          "--top-k",       "100",
                                          "--seed",        "1234",
                                          "--max-tokens",  "12",
                                          "--ignore-eos"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = sampling;
    args.insert(args.end(), extra.begin(), extra.end());
    return generate_json(args)["outputs"];
  };
  auto alone = with({"--prompt-ids", "5,6,7"});
  auto batch = with(
    {"--prompt-ids", "9,9", "--prompt-ids", "5,6,7", "--tp", "2", "--pp", "2"});
  CHECK(batch[1]["token_ids"] == alone[0]["token_ids"]);
  auto other_seed = sampling;
  other_seed[9] = "4321";
  other_seed.insert(other_seed.end(), {"--prompt-ids", "5,6,7", "--json"});
  auto r = generate(other_seed);
  REQUIRE(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out)["outputs"][0]["token_ids"] != alone[0]["token_ids"]);
  // Greedy logprobs: the sampled token is the best one, with the top K listed.
  auto lp = generate_json({"--model", fixture("llama_gqa"), "--prompt-ids", "1,2,3",
                           "--max-tokens", "3", "--logprobs", "4", "--ignore-eos"});
  REQUIRE(lp["outputs"][0]["logprobs"].size() == 3);
  for (const auto& e : lp["outputs"][0]["logprobs"]) {
    REQUIRE(e["top"].size() == 4);
    CHECK(e["top"][0][0] == e["token_id"]);
    CHECK(e["logprob"].get<double>() <= 0);
    CHECK(e["top"][1][1].get<double>() <= e["top"][0][1].get<double>());
  }
}

TEST_CASE("stop tokens and EOS end a prompt with 'stop'; --ignore-eos runs on") {
  auto expected = read_json(fixture("llama_gqa") + "/expected.json");
  const auto prompt = ids(expected["prompts"][0].get<std::vector<int32_t>>());
  const auto tokens = expected["outputs"][0]["token_ids"].get<std::vector<int32_t>>();
  // A stop token id: the prompt stops after its first occurrence, the token kept.
  auto third = tokens[2];
  auto until = static_cast<size_t>(std::find(tokens.begin(), tokens.end(), third)
                                   - tokens.begin())
               + 1;
  auto j = generate_json({"--model", fixture("llama_gqa"), "--prompt-ids", prompt,
                          "--max-tokens", "8", "--stop-token-ids", std::to_string(third)});
  CHECK(j["outputs"][0]["finish_reason"] == "stop");
  CHECK(j["outputs"][0]["token_ids"]
        == std::vector<int32_t>(tokens.begin(), tokens.begin() + static_cast<long>(until)));
  // The same token as the model's EOS (generation_config.json).
  scratch s{"llama_gqa"};
  std::ofstream{s.dir / "generation_config.json"}
    << nlohmann::json{{"eos_token_id", std::vector<int32_t>{third}}}.dump();
  auto eos = generate_json(
    {"--model", s.dir.string(), "--prompt-ids", prompt, "--max-tokens", "8"});
  CHECK(eos["outputs"][0]["finish_reason"] == "stop");
  CHECK(eos["outputs"][0]["token_ids"].size() == until);
  auto ignored = generate_json(
    {"--model", s.dir.string(), "--prompt-ids", prompt, "--max-tokens", "8", "--ignore-eos"});
  CHECK(ignored["outputs"][0]["finish_reason"] == "length");
  CHECK(ignored["outputs"][0]["token_ids"] == tokens);
}

TEST_CASE("a KV budget exhausted mid-run fails that prompt with a clear error, exit 1") {
  auto r = generate({"--model", fixture("llama_gqa"), "--tp", "2", "--kv-cache-tokens", "9",
                     "--prompt-ids", "1,2,3,4,5", "--max-tokens", "8", "--ignore-eos",
                     "--json"});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("error: prompt 0: request 'gen-0': the KV cache is full")
        != std::string::npos);
  CHECK(r.err.find("--kv-cache-tokens") != std::string::npos);
  auto j = nlohmann::json::parse(r.out);
  // 5 prompt tokens and 4 decodes fit in 9; the token sampled before the failure is kept.
  CHECK(j["outputs"][0]["token_ids"].size() == 5);
  CHECK(j["outputs"][0].contains("error"));
}

TEST_CASE("bad flags exit 2 with one error line") {
  const auto m = fixture("llama_gqa");
  bad_flags({"--prompt-ids", "1"}, "--model DIR is required");
  bad_flags({"--model", "/nonexistent/dir", "--prompt-ids", "1"}, "is not a directory");
  bad_flags({"--model", m}, "at least one prompt");
  bad_flags({"--model", m, "--prompt-ids", "1,x"}, "--prompt-ids");
  bad_flags({"--model", m, "--prompt-ids", "1,256"}, "outside the model's vocabulary of 256");
  bad_flags({"--model", m, "--prompt-ids", "1", "--top-p", "0"}, "--top-p");
  bad_flags({"--model", m, "--prompt-ids", "1", "--temperature", "-1"}, "--temperature");
  bad_flags({"--model", m, "--prompt-ids", "1", "--logprobs", "21"}, "--logprobs");
  bad_flags({"--model", m, "--prompt-ids", "1", "--max-tokens", "0"}, "--max-tokens");
  bad_flags({"--model", m, "--prompt-ids", "1", "--tp", "3"}, "--tp 3 cannot shard");
  bad_flags({"--model", m, "--prompt-ids", "1", "--pp", "2", "--pp-layer-partition", "1,2"},
            "--pp-layer-partition");
  // No GPU here: a build without CUDA says so, a CUDA build says no GPU is visible.
  bad_flags({"--model", m, "--prompt-ids", "1", "--device", "cuda"}, "--device cuda");
  bad_flags({"--model", m, "--prompt-ids", "1", "--random-weights", "--device", "cpu"},
            "--random-weights: the weights are drawn on the GPU");
  bad_flags({"--model", m, "--prompt-ids", "1", "--num-layers", "3"}, "drop the flag");
  bad_flags({"--model", m, "--prompt-ids", "1", "--stop-token-ids", "999"}, "vocabulary");
  scratch s{"llama_gqa"};
  auto cfg = read_json(s.dir / "config.json");
  cfg["architectures"] = {"FalconForCausalLM"};
  std::ofstream{s.dir / "config.json"} << cfg.dump();
  bad_flags({"--model", s.dir.string(), "--prompt-ids", "1"}, "FalconForCausalLM");
  ::setenv("VLLM_PP_LAYER_PARTITION", "2,2", 1);
  bad_flags({"--model", m, "--prompt-ids", "1", "--pp", "2"}, "VLLM_PP_LAYER_PARTITION");
  ::unsetenv("VLLM_PP_LAYER_PARTITION");
}

TEST_CASE("VLLM_PP_LAYER_PARTITION splits the stages; a bad checkpoint fails start-up") {
  test::become_subreaper();
  auto expected = read_json(fixture("llama3_tied_sharded") + "/expected.json");
  ::setenv("VLLM_PP_LAYER_PARTITION", "1,2", 1);
  std::vector<std::string> args{"--model",      fixture("llama3_tied_sharded"),
                                "--pp",         "2",
                                "--max-tokens", "8",
                                "--ignore-eos"};
  auto p = prompt_flags(expected);
  args.insert(args.end(), p.begin(), p.end());
  auto j = generate_json(args);
  ::unsetenv("VLLM_PP_LAYER_PARTITION");
  CHECK(j["outputs"][0]["token_ids"].size() == 8);
  // A truncated shard: every rank refuses it at load, naming the file; nothing is left.
  scratch s{"llama3_tied_sharded"};
  auto shard = s.dir / "model-00003-of-00006.safetensors";
  fs::resize_file(shard, fs::file_size(shard) / 2);
  auto r = generate({"--model", s.dir.string(), "--tp", "2", "--prompt-ids", "1"});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("model-00003-of-00006.safetensors") != std::string::npos);
  CHECK(r.err.find("truncated") != std::string::npos);
  CHECK(test::wait_until(
    [] {
      test::reap_zombies();
      return test::children_of(getpid()).empty();
    },
    3s));
}

TEST_CASE("cafex run --model runs the workload on a checkpoint") {
  std::vector<std::string> argv{test::binary_from_env("CAFEX_BIN"),
                                "run",
                                "--json",
                                "--model",
                                fixture("mistral_window"),
                                "--tp",
                                "2",
                                "--steps",
                                "4",
                                "--batch",
                                "2"};
  auto r = test::run_command(argv, 120s);
  INFO("stderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["tokens"].size() == 4);
  for (const auto& step : j["tokens"])
    for (const auto& t : step)
      CHECK((t.get<int>() >= 0 && t.get<int>() < 256));
  auto bad = test::run_command(
    {test::binary_from_env("CAFEX_BIN"), "run", "--kv-cache-tokens", "8"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("name it with --model DIR") != std::string::npos);
}
