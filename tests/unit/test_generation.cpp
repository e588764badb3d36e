// generation.hpp: the request loop's steps and its stop rules, against a scripted model.
#include <doctest/doctest.h>

#include <functional>
#include <map>

#include "runtime/models/generation.hpp"

using namespace cafex;

namespace {

/// Answers every request of a step with `next(req_id, tokens so far in the request)`.
model_runner_output answer(const scheduler_output& s,
                           const std::function<int32_t(const std::string&, size_t)>& next,
                           std::map<std::string, size_t>& len) {
  model_runner_output o;
  o.step_id = s.step_id;
  for (const auto& id : s.finished)
    len.erase(id);
  for (const auto& r : s.new_requests) {
    len[r.req_id] = r.prompt.size();
    o.req_ids.push_back(r.req_id);
  }
  for (const auto& r : s.cached_requests) {
    REQUIRE(len.count(r.req_id) == 1);
    ++len[r.req_id];
    o.req_ids.push_back(r.req_id);
  }
  for (const auto& id : o.req_ids)
    o.sampled.push_back(next(id, len[id]));
  return o;
}

} // namespace

TEST_CASE("prompts prefill in the first step, then decode until max_tokens") {
  generation g({2}, 100);
  sampling_params p;
  p.max_tokens = 3;
  g.add({5, 6}, p);
  g.add({7}, p);
  std::map<std::string, size_t> len;
  auto s0 = g.next_step();
  REQUIRE(s0.new_requests.size() == 2);
  CHECK(s0.new_requests[0].prompt == std::vector<int32_t>{5, 6});
  CHECK(s0.new_requests[0].sampling.max_tokens == 3);
  CHECK(s0.cached_requests.empty());
  g.observe(answer(
    s0, [](const std::string&, size_t n) { return 10 + int32_t(n); }, len));
  int steps = 1;
  while (!g.done()) {
    auto s = g.next_step();
    CHECK(s.new_requests.empty());
    CHECK(s.cached_requests.size() == 2);
    CHECK(s.cached_requests[0].token == g.outputs()[0].token_ids.back());
    g.observe(answer(
      s, [](const std::string&, size_t n) { return 10 + int32_t(n); }, len));
    ++steps;
  }
  CHECK(steps == 3);
  CHECK(g.outputs()[0].token_ids == std::vector<int32_t>{12, 13, 14});
  CHECK(g.outputs()[0].finish_reason == "length");
  CHECK(g.outputs()[1].token_ids == std::vector<int32_t>{11, 12, 13});
  CHECK(g.next_step().empty());
}

TEST_CASE("EOS and stop tokens end a request with 'stop', the token kept") {
  generation g({2}, 100);
  sampling_params p;
  p.max_tokens = 10;
  g.add({1}, p); // samples 5, 2 (EOS)
  sampling_params ignore = p;
  ignore.ignore_eos = true;
  ignore.max_tokens = 4;
  g.add({1}, ignore); // EOS ignored: runs to max_tokens
  sampling_params stop = p;
  stop.stop_token_ids = {9};
  g.add({1}, stop); // EOS (2) comes before its stop token
  std::map<std::string, size_t> len;
  auto seq = [](const std::string&, size_t n) { return n == 1 ? 5 : (n == 2 ? 2 : 9); };
  while (!g.done()) {
    auto s = g.next_step();
    for (const auto& id : s.finished)
      CHECK(id != "gen-1");
    g.observe(answer(s, seq, len));
  }
  CHECK(g.outputs()[0].token_ids == std::vector<int32_t>{5, 2});
  CHECK(g.outputs()[0].finish_reason == "stop");
  CHECK(g.outputs()[1].token_ids == std::vector<int32_t>{5, 2, 9, 9});
  CHECK(g.outputs()[1].finish_reason == "length");
  CHECK(g.outputs()[2].finish_reason == "stop");

  generation only_stop({}, 100);
  sampling_params st = p;
  st.stop_token_ids = {9};
  only_stop.add({1}, st);
  len.clear();
  while (!only_stop.done())
    only_stop.observe(answer(only_stop.next_step(), seq, len));
  CHECK(only_stop.outputs()[0].token_ids == std::vector<int32_t>{5, 2, 9});
  CHECK(only_stop.outputs()[0].finish_reason == "stop");
}

TEST_CASE("the model's length limit ends a request with 'length'") {
  generation g({}, 6);
  sampling_params p;
  p.max_tokens = 100;
  g.add({1, 2, 3, 4}, p);
  std::map<std::string, size_t> len;
  while (!g.done())
    g.observe(answer(
      g.next_step(), [](const std::string&, size_t) { return 3; }, len));
  CHECK(g.outputs()[0].token_ids.size() == 2);
  CHECK(g.outputs()[0].finish_reason == "length");
}

TEST_CASE("a request the model failed ends with its error; it is freed, the others go on") {
  generation g({}, 100);
  sampling_params p;
  p.max_tokens = 3;
  g.add({1}, p);
  g.add({1}, p);
  auto s0 = g.next_step();
  model_runner_output o;
  o.req_ids = {"gen-0", "gen-1"};
  o.sampled = {-1, 4};
  o.errors = {"the KV cache is full", ""};
  g.observe(o);
  CHECK(g.outputs()[0].error == "the KV cache is full");
  CHECK(g.outputs()[0].done());
  auto s1 = g.next_step();
  CHECK(s1.finished == std::vector<std::string>{"gen-0"});
  REQUIRE(s1.cached_requests.size() == 1);
  CHECK(s1.cached_requests[0].req_id == "gen-1");
}

TEST_CASE("recompute re-prefills running requests with what they generated") {
  generation g({}, 100);
  sampling_params p;
  p.max_tokens = 5;
  g.add({1, 2}, p);
  std::map<std::string, size_t> len;
  auto next = [](const std::string&, size_t n) { return int32_t(n); };
  g.observe(answer(g.next_step(), next, len)); // 2
  g.observe(answer(g.next_step(), next, len)); // 3
  g.recompute();
  len.clear();
  auto s = g.next_step();
  REQUIRE(s.new_requests.size() == 1);
  CHECK(s.new_requests[0].prompt == std::vector<int32_t>{1, 2, 2, 3});
  CHECK(s.cached_requests.empty());
  g.observe(answer(s, next, len));
  while (!g.done())
    g.observe(answer(g.next_step(), next, len));
  CHECK(g.outputs()[0].token_ids == std::vector<int32_t>{2, 3, 4, 5, 6});
}
