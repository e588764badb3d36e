#include "runtime/models/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#include "runtime/models/tensor_math.hpp"

namespace cafex {

namespace {

// vLLM's _SAMPLING_EPS: a temperature below it is greedy.
constexpr float sampling_eps = 1e-5f;

// Order of candidates: higher value first, lower id on ties (deterministic).
struct by_value {
  const float* v;
  bool operator()(int32_t a, int32_t b) const {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  }
};

void fill_logprobs(const float* logits, int64_t vocab, int32_t token, int32_t k,
                   sampler_scratch& s, token_logprobs& lp) {
  float mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i)
    mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i)
    sum += std::exp(static_cast<double>(logits[i] - mx));
  const auto lse = static_cast<float>(static_cast<double>(mx) + std::log(sum));
  lp.token = token;
  lp.logprob = logits[token] - lse;
  lp.top_ids.clear();
  lp.top_logprobs.clear();
  const auto n = static_cast<int64_t>(std::min<int64_t>(k, vocab));
  if (n <= 0)
    return;
  s.ids.resize(static_cast<size_t>(vocab));
  std::iota(s.ids.begin(), s.ids.end(), 0);
  std::partial_sort(s.ids.begin(), s.ids.begin() + n, s.ids.end(), by_value{logits});
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = s.ids[static_cast<size_t>(i)];
    lp.top_ids.push_back(id);
    lp.top_logprobs.push_back(logits[id] - lse);
  }
}

} // namespace

std::string check_sampling(const sampling_params& p, int64_t vocab) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return fmt::format("temperature must be a number >= 0 (0: greedy), got {}", p.temperature);
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1)
    return fmt::format("top_p must be in (0, 1], got {}", p.top_p);
  if (!std::isfinite(p.min_p) || p.min_p < 0 || p.min_p > 1)
    return fmt::format("min_p must be in [0, 1], got {}", p.min_p);
  if (p.min_tokens < 0)
    return fmt::format("min_tokens must be >= 0, got {}", p.min_tokens);
  if (p.min_tokens > p.max_tokens)
    return fmt::format("min_tokens ({}) must be at most max_tokens ({})", p.min_tokens,
                       p.max_tokens);
  if (p.top_k < -1)
    return fmt::format("top_k must be -1 or 0 (whole vocabulary) or >= 1, got {}", p.top_k);
  if (p.logprobs > max_logprobs)
    return fmt::format("logprobs must be at most {}, got {}", max_logprobs, p.logprobs);
  if (p.max_tokens < 1)
    return fmt::format("max_tokens must be >= 1, got {}", p.max_tokens);
  for (auto t : p.stop_token_ids)
    if (t < 0 || t >= vocab)
      return fmt::format("stop token id {} is outside the vocabulary of {}", t, vocab);
  return {};
}

uint64_t default_seed(const std::string& req_id) {
  uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a
  for (unsigned char c : req_id)
    h = (h ^ c) * 0x100000001b3ULL;
  return splitmix64(h);
}

double sample_uniform(uint64_t seed, int64_t position) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(position));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

int32_t sample_token(const float* logits, int64_t vocab, const sampling_params& p,
                     uint64_t seed, int64_t position, sampler_scratch& s, token_logprobs* lp,
                     int64_t generated, const std::vector<int32_t>* eos_ids) {
  const float* raw = logits; // logprobs are those of the raw logits, before any masking
  if (generated >= 0 && generated < p.min_tokens) {
    s.masked.assign(logits, logits + vocab);
    auto ban = [&](int32_t id) {
      if (id >= 0 && id < vocab)
        s.masked[static_cast<size_t>(id)] = -std::numeric_limits<float>::infinity();
    };
    for (auto id : p.stop_token_ids)
      ban(id);
    if (eos_ids != nullptr && !p.ignore_eos)
      for (auto id : *eos_ids)
        ban(id);
    logits = s.masked.data();
  }
  int32_t token = 0;
  if (p.temperature < sampling_eps) {
    token = argmax(logits, static_cast<size_t>(vocab));
  } else {
    // Candidates in order (value desc, id asc), truncated by top-k then top-p.
    auto& v = s.values;
    v.resize(static_cast<size_t>(vocab));
    const float inv_t = 1.0f / p.temperature;
    for (int64_t i = 0; i < vocab; ++i)
      v[static_cast<size_t>(i)] = logits[i] * inv_t;
    auto& ids = s.ids;
    ids.resize(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    int64_t n = vocab;
    if (p.top_k > 0 && p.top_k < vocab) {
      n = p.top_k;
      std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), by_value{v.data()});
    } else {
      std::sort(ids.begin(), ids.end(), by_value{v.data()});
    }
    const float mx = v[static_cast<size_t>(ids[0])];
    if (p.min_p > 0) {
      // Candidates are in order: keep the prefix whose probability is at least min_p
      // times the likeliest's (that one always stays).
      const float floor = mx + std::log(p.min_p);
      int64_t keep = 1;
      while (keep < n && v[static_cast<size_t>(ids[static_cast<size_t>(keep)])] >= floor)
        ++keep;
      n = keep;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; ++i)
      sum += std::exp(
        static_cast<double>(v[static_cast<size_t>(ids[static_cast<size_t>(i)])] - mx));
    if (p.top_p < 1.0f) {
      // Keep the smallest prefix whose probability reaches top_p (at least one token).
      double cum = 0;
      int64_t keep = 0;
      while (keep < n) {
        cum += std::exp(static_cast<double>(
                 v[static_cast<size_t>(ids[static_cast<size_t>(keep)])] - mx))
               / sum;
        ++keep;
        if (cum >= static_cast<double>(p.top_p))
          break;
      }
      n = keep;
      sum = 0;
      for (int64_t i = 0; i < n; ++i)
        sum += std::exp(
          static_cast<double>(v[static_cast<size_t>(ids[static_cast<size_t>(i)])] - mx));
    }
    const double target = sample_uniform(seed, position) * sum;
    double cum = 0;
    token = ids[static_cast<size_t>(n - 1)];
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = ids[static_cast<size_t>(i)];
      cum += std::exp(static_cast<double>(v[static_cast<size_t>(id)] - mx));
      if (target < cum) {
        token = id;
        break;
      }
    }
  }
  if (lp != nullptr && p.logprobs >= 0)
    fill_logprobs(raw, vocab, token, p.logprobs, s, *lp);
  return token;
}

} // namespace cafex
