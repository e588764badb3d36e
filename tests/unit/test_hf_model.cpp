// The "hf" runner against transformers, in-process: every committed fixture
// (tests/hf/fixtures, made by tests/hf/make_fixtures.py) is generated greedily by TP x PP
// grids of llama_model shards (TP ranks on threads over the fake collective, PP stages
// chained) and compared with the tokens transformers produced on the same files.
// Criterion, as vLLM's: at (1, 1) in float32 the tokens are equal; elsewhere, at the first
// position where they differ, cafex's token is among transformers' top 5 there.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "hf_fixtures.hpp"

#include "runtime/error.hpp"
#include "runtime/models/hf/llama_model.hpp"
#include "transport/fake_collective.hpp"

using namespace cafex;

namespace {

using test::fixture_dir;
using test::read_json;

const auto& fixtures = test::hf_fixtures;

/// A TP x PP grid of shards of one checkpoint, driven step by step as the dataflow does.
struct grid {
  int tp, pp;
  std::vector<std::unique_ptr<fake_collective_group>> groups; ///< one per stage
  std::vector<std::vector<hf::llama_model>> shards;           ///< [stage][tp rank]

  grid(const model_config& cfg, int tp_size, int pp_size) : tp(tp_size), pp(pp_size) {
    shards.resize(static_cast<size_t>(pp));
    for (int s = 0; s < pp; ++s) {
      groups.push_back(std::make_unique<fake_collective_group>(tp));
      shards[static_cast<size_t>(s)].resize(static_cast<size_t>(tp));
      for (int r = 0; r < tp; ++r) {
        auto err = shards[s][r].load(cfg, shard_info{r, tp, s, pp},
                                     groups.back()->endpoint(r));
        REQUIRE_MESSAGE(!err, describe(err));
      }
    }
  }

  /// One step through every stage; answers the last stage's TP rank 0 output.
  caf::expected<model_runner_output> step(const scheduler_output& so) {
    intermediate_tensors carried;
    const intermediate_tensors* input = nullptr;
    model_runner_output out;
    for (int s = 0; s < pp; ++s) {
      std::vector<caf::expected<stage_result>> res(static_cast<size_t>(tp),
                                                   caf::expected<stage_result>{caf::error{}});
      std::vector<std::thread> threads;
      for (int r = 0; r < tp; ++r)
        threads.emplace_back([&, r] { res[r] = shards[s][r].execute(so, input); });
      for (auto& t : threads)
        t.join();
      for (auto& r : res)
        if (!r)
          return r.error();
      carried = res[0]->to_next;
      input = &carried;
      out = res[0]->output;
    }
    return out;
  }
};

/// Greedy generation of every prompt of `expected` (all in one batch, the later ones
/// joining one step after another so that steps mix prefill and decode).
std::vector<std::vector<int32_t>> generate(grid& g, const nlohmann::json& expected) {
  const auto prompts = expected["prompts"].get<std::vector<std::vector<int32_t>>>();
  const auto max_new = expected["max_new_tokens"].get<size_t>();
  std::vector<std::vector<int32_t>> out(prompts.size());
  size_t joined = 0;
  uint64_t step_id = 0;
  while (true) {
    scheduler_output so;
    so.step_id = step_id++;
    for (size_t i = 0; i < joined; ++i)
      if (out[i].size() < max_new)
        so.cached_requests.push_back({"r" + std::to_string(i), out[i].back()});
      else if (out[i].size() == max_new)
        so.finished.push_back("r" + std::to_string(i));
    if (joined < prompts.size()) {
      so.new_requests.push_back({"r" + std::to_string(joined), prompts[joined]});
      ++joined;
    }
    if (so.empty())
      break;
    auto r = g.step(so);
    REQUIRE_MESSAGE(r, describe(r.error()));
    REQUIRE(r->errors.empty());
    REQUIRE(r->req_ids.size() == so.num_requests());
    for (size_t k = 0; k < r->req_ids.size(); ++k)
      out[std::stoul(r->req_ids[k].substr(1))].push_back(r->sampled[k]);
  }
  return out;
}

void check_close(const std::string& what, const std::vector<int32_t>& got,
                 const nlohmann::json& want, bool exact) {
  const auto tokens = want["token_ids"].get<std::vector<int32_t>>();
  REQUIRE(got.size() == tokens.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == tokens[i])
      continue;
    INFO(what << ": position " << i << ": cafex " << got[i] << ", transformers " << tokens[i]);
    REQUIRE_FALSE_MESSAGE(exact, "float32 at tp=1 pp=1 must give transformers' tokens");
    bool in_top = false;
    for (const auto& e : want["top"][i])
      in_top = in_top || e[0].get<int32_t>() == got[i];
    CHECK_MESSAGE(in_top, "cafex's token is not in transformers' top 5");
    return; // later tokens follow different histories
  }
}

} // namespace

TEST_CASE("hf checkpoints give transformers' tokens for every TP x PP shape") {
  const std::pair<int, int> shapes[] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}};
  for (const char* name : fixtures) {
    auto expected = read_json(fixture_dir(name) + "/expected.json");
    for (auto [tp, pp] : shapes) {
      CAPTURE(name);
      CAPTURE(tp);
      CAPTURE(pp);
      model_config cfg;
      cfg.name = "hf";
      cfg.path = fixture_dir(name);
      grid g{cfg, tp, pp};
      auto got = generate(g, expected);
      for (size_t i = 0; i < got.size(); ++i)
        check_close(std::string(name) + " prompt " + std::to_string(i), got[i],
                    expected["outputs"][i], tp == 1 && pp == 1);
    }
  }
}

TEST_CASE("pp stages split the layers by vLLM's rule or the partition given") {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = fixture_dir("llama3_tied_sharded"); // 3 layers
  {
    grid g{cfg, 1, 2};
    CHECK(g.shards[0][0].layers().first == 0);
    CHECK(g.shards[0][0].layers().count == 2);
    CHECK(g.shards[1][0].layers().first == 2);
    CHECK(g.shards[1][0].layers().count == 1);
  }
  cfg.pp_layer_partition = "1,2";
  {
    grid g{cfg, 1, 2};
    CHECK(g.shards[0][0].layers().count == 1);
    CHECK(g.shards[1][0].layers().count == 2);
    auto expected = read_json(fixture_dir("llama3_tied_sharded") + "/expected.json");
    auto got = generate(g, expected);
    for (size_t i = 0; i < got.size(); ++i)
      check_close("partition 1,2", got[i], expected["outputs"][i], false);
  }
  cfg.pp_layer_partition = "1,1";
  hf::llama_model m;
  fake_collective_group one{1};
  auto err = m.load(cfg, shard_info{0, 1, 0, 2}, one.endpoint(0));
  REQUIRE(err);
  CHECK_MESSAGE(describe(err).find("summing to the model's 3 layers") != std::string::npos,
                describe(err));
}

TEST_CASE("a request whose KV cache does not fit fails alone; the others run") {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = fixture_dir("llama_gqa");
  cfg.kv_cache_tokens = 8;
  grid g{cfg, 2, 2};
  scheduler_output s0;
  s0.new_requests = {{"a", {1, 2, 3, 4, 5}}, {"b", {6, 7, 8, 9}}};
  auto r0 = g.step(s0);
  REQUIRE_MESSAGE(r0, describe(r0.error()));
  REQUIRE(r0->req_ids == std::vector<std::string>{"a", "b"});
  REQUIRE(r0->errors.size() == 2);
  CHECK(r0->errors[0].empty());
  CHECK(r0->sampled[0] >= 0);
  CHECK(r0->sampled[1] == -1);
  CHECK_MESSAGE(r0->errors[1].find("the KV cache is full (4 token(s) needed, 3 of 8 free")
                  != std::string::npos,
                r0->errors[1]);
  // "a" decodes until its cache is full, then fails alone; a new one fits after it ends.
  int32_t last = r0->sampled[0];
  for (int i = 0; i < 3; ++i) {
    scheduler_output s;
    s.step_id = static_cast<uint64_t>(i + 1);
    s.cached_requests = {{"a", last}};
    auto r = g.step(s);
    REQUIRE(r);
    REQUIRE(r->errors.empty());
    last = r->sampled[0];
  }
  scheduler_output full;
  full.cached_requests = {{"a", last}};
  full.new_requests = {{"c", {3}}};
  auto rf = g.step(full);
  REQUIRE(rf);
  REQUIRE(rf->errors.size() == 2);
  CHECK(rf->errors[0].find("request 'c': the KV cache is full") != std::string::npos);
  CHECK(rf->errors[1].find("request 'a': the KV cache is full") != std::string::npos);
  scheduler_output after;
  after.finished = {"a"};
  after.new_requests = {{"c", {3}}};
  auto ra = g.step(after);
  REQUIRE(ra);
  CHECK(ra->errors.empty());
  CHECK(g.shards[1][0].live_requests() == 1);
}

TEST_CASE("unknown, too long and out-of-vocabulary requests fail alone with their reason") {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = fixture_dir("llama_gqa"); // vocab 256, 128 positions
  grid g{cfg, 1, 1};
  scheduler_output s;
  s.new_requests = {{"long", std::vector<int32_t>(129, 5)}, {"oov", {1, 256}}, {"ok", {4}}};
  s.cached_requests = {{"ghost", 3}};
  auto r = g.step(s);
  REQUIRE(r);
  REQUIRE(r->errors.size() == 4);
  CHECK(r->errors[0].find("exceeds the model's length limit of 128") != std::string::npos);
  CHECK(r->errors[1].find("outside the vocabulary of 256") != std::string::npos);
  CHECK(r->errors[2].empty());
  CHECK(r->errors[3].find("'ghost' is not running") != std::string::npos);
  CHECK(g.shards[0][0].live_requests() == 1);
  scheduler_output twice;
  twice.new_requests = {{"x", {1}}, {"x", {2}}};
  auto rt = g.step(twice);
  REQUIRE_FALSE(rt);
  CHECK(describe(rt.error()).find("names request 'x' twice") != std::string::npos);
}

TEST_CASE("without a budget the KV cache holds many requests; bad sampling fails alone") {
  model_config cfg;
  cfg.name = "hf";
  cfg.path = fixture_dir("llama_gqa"); // 128 positions: the default budget is far more
  grid g{cfg, 1, 1};
  scheduler_output s;
  for (int i = 0; i < 4; ++i)
    s.new_requests.emplace_back("r" + std::to_string(i), std::vector<int32_t>(100, 5 + i));
  sampling_params bad;
  bad.top_p = 0;
  s.new_requests.emplace_back("bad", std::vector<int32_t>{1}, bad);
  auto r = g.step(s);
  REQUIRE_MESSAGE(r, describe(r.error()));
  REQUIRE(r->errors.size() == 5);
  for (int i = 0; i < 4; ++i)
    CHECK_MESSAGE(r->errors[static_cast<size_t>(i)].empty(),
                  r->errors[static_cast<size_t>(i)]);
  CHECK(r->errors[4].find("request 'bad': top_p must be in (0, 1], got 0")
        != std::string::npos);
  CHECK(r->sampled[4] == -1);
  CHECK(g.shards[0][0].live_requests() == 4);
}
