#include "runtime/models/workload.hpp"

namespace cafex {

namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

} // namespace

demo_workload::demo_workload(uint64_t seed, int batch, int vocab_size)
  : seed_(seed), batch_(batch), vocab_(vocab_size) {}

std::vector<int32_t> demo_workload::prompt(uint64_t seed, int index, int vocab_size) {
  auto len = 3 + static_cast<int>(mix(seed * 1315423911ULL + index) % 9);
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(len));
  for (int j = 0; j < len; ++j)
    out.push_back(
      static_cast<int32_t>(mix(mix(seed) ^ (index * 1000003ULL + j)) % vocab_size));
  return out;
}

scheduler_output demo_workload::next_step() {
  scheduler_output s;
  s.step_id = step_++;
  if (ids_.empty()) {
    for (int i = 0; i < batch_; ++i) {
      ids_.push_back("req-" + std::to_string(i));
      s.new_requests.push_back(new_request{ids_.back(), prompt(seed_, i, vocab_)});
    }
    return s;
  }
  if (recompute_) {
    recompute_ = false;
    for (size_t i = 0; i < ids_.size(); ++i) {
      auto p = prompt(seed_, static_cast<int>(i), vocab_);
      p.insert(p.end(), generated_[i].begin(), generated_[i].end());
      s.new_requests.push_back(new_request{ids_[i], std::move(p)});
    }
    return s;
  }
  for (size_t i = 0; i < ids_.size(); ++i)
    s.cached_requests.push_back(cached_request{ids_[i], last_[i]});
  return s;
}

void demo_workload::observe(const model_runner_output& out) {
  last_ = out.sampled;
  generated_.resize(last_.size());
  for (size_t i = 0; i < last_.size(); ++i)
    generated_[i].push_back(last_[i]);
}

} // namespace cafex
