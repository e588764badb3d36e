// sampling.hpp: greedy, temperature, top-k, top-p, the counter-based draw and logprobs.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "runtime/models/sampling.hpp"

using namespace cafex;

namespace {

/// Logits whose softmax is exactly `probs`.
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs)
    l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::map<int32_t, int> draw(const std::vector<float>& logits, const sampling_params& p,
                            int n) {
  sampler_scratch s;
  std::map<int32_t, int> counts;
  for (int i = 0; i < n; ++i)
    ++counts[sample_token(logits.data(), static_cast<int64_t>(logits.size()), p, 7, i, s,
                          nullptr)];
  return counts;
}

} // namespace

TEST_CASE("greedy takes the highest logit, the lowest id on ties") {
  std::vector<float> l{0.5f, 2.0f, -1.0f, 2.0f};
  sampler_scratch s;
  sampling_params p;
  CHECK(sample_token(l.data(), 4, p, 1, 0, s, nullptr) == 1);
  p.temperature = 1e-6f; // below vLLM's epsilon: greedy too
  CHECK(sample_token(l.data(), 4, p, 1, 0, s, nullptr) == 1);
  p.temperature = 5.0f;
  p.top_k = 1;
  for (int pos = 0; pos < 50; ++pos)
    CHECK(sample_token(l.data(), 4, p, 3, pos, s, nullptr) == 1);
}

TEST_CASE("temperature 1 draws by the softmax") {
  const std::vector<double> probs{0.1, 0.2, 0.3, 0.4};
  sampling_params p;
  p.temperature = 1.0f;
  const int n = 40000;
  auto counts = draw(logits_of(probs), p, n);
  for (int t = 0; t < 4; ++t)
    CHECK(std::abs(static_cast<double>(counts[t]) / n - probs[static_cast<size_t>(t)]) < 0.01);
}

TEST_CASE("top-k and top-p keep only the best tokens") {
  const auto l = logits_of({0.05, 0.3, 0.15, 0.5});
  sampling_params p;
  p.temperature = 1.0f;
  p.top_k = 2;
  auto k2 = draw(l, p, 4000);
  CHECK(k2.size() == 2);
  CHECK(k2.count(3) == 1);
  CHECK(k2.count(1) == 1);
  // 0.5 and 0.3 reach 0.75; 0.15 is never drawn.
  p.top_k = 0;
  p.top_p = 0.75f;
  auto p75 = draw(l, p, 4000);
  CHECK(p75.size() == 2);
  CHECK(std::abs(static_cast<double>(p75[3]) / 4000 - 0.5 / 0.8) < 0.03);
  p.top_p = 0.01f; // always at least the best token
  auto tiny = draw(l, p, 500);
  CHECK(tiny.size() == 1);
  CHECK(tiny.count(3) == 1);
}

TEST_CASE("the draw depends only on the seed and the position") {
  const auto l = logits_of({0.25, 0.25, 0.25, 0.25});
  sampling_params p;
  p.temperature = 1.0f;
  sampler_scratch a, b;
  std::set<int32_t> seen;
  for (int pos = 0; pos < 64; ++pos) {
    auto x = sample_token(l.data(), 4, p, 42, pos, a, nullptr);
    // Another scratch, interleaved with another seed: same answer.
    (void) sample_token(l.data(), 4, p, 43, pos, b, nullptr);
    CHECK(sample_token(l.data(), 4, p, 42, pos, b, nullptr) == x);
    seen.insert(x);
  }
  CHECK(seen.size() == 4);
  CHECK(sample_uniform(1, 5) != sample_uniform(2, 5));
  CHECK(sample_uniform(1, 5) != sample_uniform(1, 6));
  CHECK(default_seed("req-1") == default_seed("req-1"));
  CHECK(default_seed("req-1") != default_seed("req-2"));
}

TEST_CASE("logprobs are the raw log-softmax: the sampled token's and the top K") {
  const auto l = logits_of({0.1, 0.2, 0.3, 0.4});
  sampling_params p;
  p.logprobs = 3;
  p.temperature = 0.5f; // logprobs stay those of the raw logits
  sampler_scratch s;
  token_logprobs lp;
  auto t = sample_token(l.data(), 4, p, 9, 0, s, &lp);
  CHECK(lp.token == t);
  CHECK(lp.logprob == doctest::Approx(std::log(0.1 * (t + 1))).epsilon(1e-5));
  REQUIRE(lp.top_ids == std::vector<int32_t>{3, 2, 1});
  CHECK(lp.top_logprobs[0] == doctest::Approx(std::log(0.4)).epsilon(1e-5));
  CHECK(lp.top_logprobs[2] == doctest::Approx(std::log(0.2)).epsilon(1e-5));
  p.logprobs = 0; // the sampled token's only
  sample_token(l.data(), 4, p, 9, 0, s, &lp);
  CHECK(lp.top_ids.empty());
  CHECK(lp.token >= 0);
}

TEST_CASE("bad sampling parameters are named with their value") {
  auto bad = [](auto edit) {
    sampling_params p;
    edit(p);
    return check_sampling(p, 100);
  };
  CHECK(bad([](sampling_params&) {}).empty());
  CHECK(bad([](sampling_params& p) { p.temperature = -1; }).find("temperature must be")
        != std::string::npos);
  CHECK(bad([](sampling_params& p) { p.temperature = NAN; }).find("temperature") == 0);
  CHECK(bad([](sampling_params& p) { p.top_p = 0; }).find("top_p must be in (0, 1], got 0")
        != std::string::npos);
  CHECK(bad([](sampling_params& p) { p.top_p = 1.5f; }).find("got 1.5") != std::string::npos);
  CHECK(bad([](sampling_params& p) { p.top_k = -2; }).find("top_k") == 0);
  CHECK(bad([](sampling_params& p) { p.logprobs = 21; }).find("at most 20")
        != std::string::npos);
  CHECK(bad([](sampling_params& p) { p.max_tokens = 0; }).find("max_tokens") == 0);
  CHECK(bad([](sampling_params& p) {
          p.stop_token_ids = {100};
        }).find("stop token id 100 is outside the vocabulary of 100")
        != std::string::npos);
}

TEST_CASE("min-p drops tokens below min_p times the likeliest's probability") {
  auto logits = logits_of({0.5, 0.3, 0.15, 0.05});
  sampling_params p;
  p.temperature = 1.0f;
  p.min_p = 0.5f; // keeps p >= 0.25: tokens 0 and 1
  auto counts = draw(logits, p, 2000);
  CHECK(counts.count(2) == 0);
  CHECK(counts.count(3) == 0);
  CHECK(counts[0] > counts[1]);
  CHECK(counts[1] > 400);
  p.min_p = 1.0f; // only the likeliest
  CHECK(draw(logits, p, 200) == std::map<int32_t, int>{{0, 200}});
}

TEST_CASE("min_tokens masks EOS and stop ids until that many tokens were generated; "
          "logprobs stay the raw ones") {
  auto logits = logits_of({0.7, 0.2, 0.1});
  const std::vector<int32_t> eos{0};
  sampling_params p; // greedy
  p.min_tokens = 2;
  p.stop_token_ids = {1};
  p.logprobs = 1;
  sampler_scratch s;
  token_logprobs lp;
  // Generated 0 and 1: EOS (0) and the stop id (1) are masked, 2 is taken.
  for (int64_t g : {0, 1}) {
    CHECK(sample_token(logits.data(), 3, p, 1, 5 + g, s, &lp, g, &eos) == 2);
    CHECK(lp.token == 2);
    CHECK(lp.logprob == doctest::Approx(std::log(0.1)).epsilon(1e-4));
    CHECK(lp.top_ids == std::vector<int32_t>{0}); // the raw top token, masked or not
  }
  CHECK(sample_token(logits.data(), 3, p, 1, 7, s, nullptr, 2, &eos) == 0);
  p.ignore_eos = true; // then EOS is an ordinary token
  CHECK(sample_token(logits.data(), 3, p, 1, 5, s, nullptr, 0, &eos) == 0);
  // Unknown generated count (< 0): nothing is masked.
  p.ignore_eos = false;
  CHECK(sample_token(logits.data(), 3, p, 1, 5, s, nullptr, -1, &eos) == 0);
  // Sampled, not only greedy.
  p.temperature = 1.0f;
  for (int i = 0; i < 50; ++i)
    CHECK(sample_token(logits.data(), 3, p, 1, i, s, nullptr, 0, &eos) == 2);
}

TEST_CASE("min_p and min_tokens are checked") {
  sampling_params p;
  p.min_p = 1.5f;
  CHECK(check_sampling(p, 10).find("min_p must be in [0, 1]") != std::string::npos);
  p = {};
  p.min_tokens = -1;
  CHECK(check_sampling(p, 10).find("min_tokens must be >= 0") != std::string::npos);
  p.min_tokens = 20;
  p.max_tokens = 4;
  CHECK(check_sampling(p, 10).find("at most max_tokens") != std::string::npos);
}
