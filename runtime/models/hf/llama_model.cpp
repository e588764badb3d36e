#include "runtime/models/hf/llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

#include <cblas.h>
#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/models/hf/hf_math.hpp"
#include "runtime/models/hf/step_admission.hpp"
#include "runtime/models/tensor_math.hpp"

namespace cafex::hf {

caf::error llama_model::load(const model_config& cfg, const shard_info& shard,
                             collective& tp) {
  loaded_ = false;
  drop_requests();
  w_ = hf_shard_weights{};
  auto who = fmt::format("hf model {} (tp rank {}, pp rank {})", cfg.path, shard.tp_rank,
                         shard.pp_rank);
  if (cfg.path.empty())
    return make_error(errc::invalid_argument,
                      "hf model: no checkpoint directory: set model_config::path (--model)");
  if (tp.size() != shard.tp_size || tp.rank() != shard.tp_rank)
    return make_error(errc::invalid_argument,
                      who + ": the TP group does not match the shard's TP rank and size");
  if (cfg.random_weights)
    return make_error(errc::invalid_argument,
                      who
                        + ": random weights are drawn on the GPU only: run on --device "
                          "cuda, or drop --random-weights to read the checkpoint");
  auto hf = load_hf_config(cfg.path);
  if (!hf)
    return hf.error();
  if (auto err = check_tp(*hf, shard.tp_size))
    return err;
  auto partition = parse_layer_partition(cfg.pp_layer_partition);
  if (!partition)
    return partition.error();
  auto layers = pp_indices(hf->num_layers, shard.pp_rank, shard.pp_size, *partition);
  if (!layers)
    return layers.error();
  auto w = load_shard_weights(cfg.path, *hf, shard, *layers);
  if (!w)
    return w.error();
  cfg_ = cfg;
  hf_ = std::move(*hf);
  shard_ = shard;
  tp_ = &tp;
  layers_ = *layers;
  s_ = slices_of(hf_, shard.tp_rank, shard.tp_size);
  w_ = std::move(*w);
  inv_freq_ = rope_inv_freq(hf_.rope, hf_.head_dim);
  max_len_ = hf_.max_position;
  // Default budget: what 4 GiB of float32 keys and values hold on this shard, as vLLM's
  // CPU backend reserves by default (VLLM_CPU_KVCACHE_SPACE=4).
  const int64_t kv_bytes_per_token = int64_t{2} * layers_.count * s_.kv_heads * hf_.head_dim
                                     * int64_t{4};
  const int64_t default_budget = kv_bytes_per_token > 0
                                   ? (int64_t{4} << 30) / kv_bytes_per_token
                                   : max_len_;
  budget_ = cfg.kv_cache_tokens > 0 ? cfg.kv_cache_tokens : std::max(max_len_, default_budget);
  loaded_ = true;
  return caf::none;
}

caf::error llama_model::admit(const scheduler_output& step) {
  rows_.clear();
  row_tokens_.clear();
  inserted_.clear();
  admission_rules rules;
  rules.free = budget_ - cached_tokens_;
  rules.budget = budget_;
  rules.max_len = max_len_;
  rules.vocab = hf_.vocab_size;
  auto verdict = admit_step(step, rules, [this](const std::string& id) -> int64_t {
    auto i = cache_.find(id);
    return i == cache_.end() ? -1 : i->second.len;
  });
  if (!verdict)
    return verdict.error();
  admission_ = std::move(*verdict);
  const size_t n_new = step.new_requests.size();
  const auto slots = static_cast<size_t>(layers_.count);
  int64_t row = 0;
  for (size_t i = 0; i < n_new; ++i) {
    if (!admission_.admitted(i))
      continue;
    const auto& r = step.new_requests[i];
    auto& kv = cache_[r.req_id];
    kv.sampling = r.sampling;
    kv.seed = r.sampling.seed >= 0 ? static_cast<uint64_t>(r.sampling.seed)
                                   : default_seed(r.req_id);
    kv.prompt_len = static_cast<int64_t>(r.prompt.size());
    kv.k.resize(slots);
    kv.v.resize(slots);
    inserted_.push_back(r.req_id);
    const auto len = static_cast<int64_t>(r.prompt.size());
    rows_.push_back(step_row{&kv, row, len, 0});
    row_tokens_.insert(row_tokens_.end(), r.prompt.begin(), r.prompt.end());
    row += len;
  }
  for (size_t i = 0; i < step.cached_requests.size(); ++i) {
    if (!admission_.admitted(n_new + i))
      continue;
    const auto& r = step.cached_requests[i];
    auto& kv = cache_.at(r.req_id);
    rows_.push_back(step_row{&kv, row, 1, kv.len});
    row_tokens_.push_back(r.token);
    ++row;
  }
  tokens_ = row;
  return caf::none;
}

caf::expected<stage_result> llama_model::execute(const scheduler_output& step,
                                                 const intermediate_tensors* input) {
  if (!loaded_)
    return make_error(errc::not_ready, "hf model: execute() before a successful load()");
  try {
    for (const auto& id : step.finished) {
      auto it = cache_.find(id);
      if (it != cache_.end()) {
        cached_tokens_ -= it->second.len;
        cache_.erase(it);
      }
    }
    if (auto err = admit(step))
      return err;
    stage_result res;
    res.to_next.hidden_size = hf_.hidden_size;
    res.output.step_id = step.step_id;
    const auto h = hf_.hidden_size;
    const bool first = shard_.pp_rank == 0;
    const bool last = shard_.pp_rank == shard_.pp_size - 1;
    if (!first)
      if (auto err = check_stage_input(input, tokens_, h, shard_.pp_rank)) {
        rollback();
        return err;
      }
    if (tokens_ > 0) {
      const auto th = static_cast<size_t>(tokens_ * h);
      if (first) {
        embed_tokens(step);
        // Vocab-parallel embedding: each rank holds its slice's rows, zeros elsewhere.
        if (shard_.tp_size > 1)
          if (auto err = tp_->all_reduce_sum_f32(x_.data(), x_.size())) {
            rollback();
            return make_error(errc::transport_failed,
                              fmt::format("hf model: TP all_reduce of the embedding failed "
                                          "on tp rank {} of {}: {}",
                                          shard_.tp_rank, shard_.tp_size, describe(err)));
          }
      } else
        x_.assign(input->hidden.begin(), input->hidden.end());
      xn_.resize(th);
      part_.resize(th);
      for (int l = 0; l < layers_.count; ++l) {
        auto err = attention(l);
        if (!err)
          err = mlp(l);
        if (err) {
          rollback();
          return err;
        }
      }
      if (last) {
        if (auto err = sample(res.output)) {
          rollback();
          return err;
        }
      } else {
        res.to_next.num_tokens = tokens_;
        res.to_next.hidden = x_;
      }
    }
    if (last) {
      // Every request of the step, in scheduler order; failed ones carry their error.
      scatter_outputs(admission_, res.output);
    }
    commit();
    return res;
  } catch (const std::exception& e) {
    rollback();
    return make_error(errc::model_failed,
                      fmt::format("hf model (tp rank {}, pp rank {}), step {}: {}",
                                  shard_.tp_rank, shard_.pp_rank, step.step_id, e.what()));
  }
}

void llama_model::embed_tokens(const scheduler_output&) {
  const auto h = static_cast<size_t>(hf_.hidden_size);
  x_.assign(static_cast<size_t>(tokens_) * h, 0.0f);
  for (int64_t t = 0; t < tokens_; ++t) {
    const int64_t local = row_tokens_[static_cast<size_t>(t)] - s_.vocab0;
    if (local >= 0 && local < s_.vocab)
      std::copy_n(&w_.embed[static_cast<size_t>(local) * h], h,
                  &x_[static_cast<size_t>(t) * h]);
  }
}

caf::error llama_model::attention(int l) {
  const auto& w = w_.layers[static_cast<size_t>(l)];
  const int64_t h = hf_.hidden_size, d = hf_.head_dim, t = tokens_;
  const int64_t qn = s_.q_heads * d, kn = s_.kv_heads * d, width = qn + 2 * kn;
  rms_norm(x_.data(), w.attn_norm.data(), xn_.data(), t, h,
           static_cast<float>(hf_.rms_norm_eps));
  qkv_.resize(static_cast<size_t>(t * width));
  gemm_bt(t, width, h, 1.0f, xn_.data(), h, w.wqkv.data(), h, qkv_.data(), width);
  if (!w.bqkv.empty())
    for (int64_t r = 0; r < t; ++r)
      for (int64_t c = 0; c < width; ++c)
        qkv_[static_cast<size_t>(r * width + c)] += w.bqkv[static_cast<size_t>(c)];
  attn_.assign(static_cast<size_t>(t * qn), 0.0f);
  for (const auto& r : rows_)
    attend(l, r);
  gemm_bt(t, h, qn, 1.0f, attn_.data(), qn, w.wo.data(), qn, part_.data(), h);
  if (!w.bo.empty())
    for (int64_t r = 0; r < t; ++r)
      for (int64_t c = 0; c < h; ++c)
        part_[static_cast<size_t>(r * h + c)] += w.bo[static_cast<size_t>(c)];
  return all_reduce("attention", l);
}

void llama_model::attend(int l, const step_row& r) {
  const int64_t d = hf_.head_dim, qn = s_.q_heads * d, kn = s_.kv_heads * d;
  const int64_t width = qn + 2 * kn;
  auto& k = r.kv->k[static_cast<size_t>(l)];
  auto& v = r.kv->v[static_cast<size_t>(l)];
  const int64_t total = r.pos0 + r.count;
  k.resize(static_cast<size_t>(total * kn));
  v.resize(static_cast<size_t>(total * kn));
  for (int64_t i = 0; i < r.count; ++i) {
    float* row = &qkv_[static_cast<size_t>((r.row0 + i) * width)];
    const int64_t pos = r.pos0 + i;
    rope_angles(pos, inv_freq_, cos_, sin_);
    for (int q = 0; q < s_.q_heads; ++q)
      rope(row + q * d, d, cos_, sin_);
    for (int kh = 0; kh < s_.kv_heads; ++kh)
      rope(row + qn + kh * d, d, cos_, sin_);
    std::copy_n(row + qn, kn, &k[static_cast<size_t>(pos * kn)]);
    std::copy_n(row + qn + kn, kn, &v[static_cast<size_t>(pos * kn)]);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int group = s_.q_heads / s_.kv_heads;
  const int64_t window = hf_.sliding_window;
  for (int64_t i = 0; i < r.count; ++i) {
    const int64_t pos = r.pos0 + i;
    const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
    const int64_t keys = pos + 1 - lo;
    if (scores_.size() < static_cast<size_t>(keys))
      scores_.resize(static_cast<size_t>(keys));
    for (int q = 0; q < s_.q_heads; ++q) {
      const float* qv = &qkv_[static_cast<size_t>((r.row0 + i) * width + q * d)];
      const int64_t kv_off = static_cast<int64_t>(q / group) * d;
      float* s = scores_.data();
      // scores = q . K^T over the visible keys, as one gemv.
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(keys), static_cast<int>(d),
                  scale, &k[static_cast<size_t>(lo * kn + kv_off)], static_cast<int>(kn), qv,
                  1, 0.0f, s, 1);
      softmax_inplace(s, static_cast<size_t>(keys));
      float* out = &attn_[static_cast<size_t>((r.row0 + i) * qn + q * d)];
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(keys), static_cast<int>(d), 1.0f,
                  &v[static_cast<size_t>(lo * kn + kv_off)], static_cast<int>(kn), s, 1, 0.0f,
                  out, 1);
    }
  }
}

caf::error llama_model::mlp(int l) {
  const auto& w = w_.layers[static_cast<size_t>(l)];
  const int64_t h = hf_.hidden_size, n = s_.inter, t = tokens_;
  rms_norm(x_.data(), w.mlp_norm.data(), xn_.data(), t, h,
           static_cast<float>(hf_.rms_norm_eps));
  gu_.resize(static_cast<size_t>(t * 2 * n));
  gemm_bt(t, 2 * n, h, 1.0f, xn_.data(), h, w.wgu.data(), h, gu_.data(), 2 * n);
  for (int64_t r = 0; r < t; ++r) {
    float* g = &gu_[static_cast<size_t>(r * 2 * n)];
    const float* u = g + n;
    for (int64_t c = 0; c < n; ++c) {
      const float x = g[c];
      g[c] = x / (1.0f + std::exp(-x)) * u[c];
    }
  }
  gemm_bt(t, h, n, 1.0f, gu_.data(), 2 * n, w.wdown.data(), n, part_.data(), h);
  return all_reduce("MLP", l);
}

caf::error llama_model::all_reduce(const char* what, int l) {
  if (shard_.tp_size > 1)
    if (auto err = tp_->all_reduce_sum_f32(part_.data(), part_.size()))
      return make_error(errc::transport_failed,
                        fmt::format("hf model: TP all_reduce of the {} output of layer {} "
                                    "failed on tp rank {} of {}, pp rank {}: {}",
                                    what, layers_.first + l, shard_.tp_rank, shard_.tp_size,
                                    shard_.pp_rank, describe(err)));
  for (size_t i = 0; i < part_.size(); ++i)
    x_[i] += part_[i];
  return caf::none;
}

caf::error llama_model::sample(model_runner_output& out) {
  const int64_t h = hf_.hidden_size, n = static_cast<int64_t>(rows_.size());
  const int64_t vs = s_.vocab, vocab = hf_.vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    const auto& r = rows_[static_cast<size_t>(i)];
    rms_norm(&x_[static_cast<size_t>((r.row0 + r.count - 1) * h)], w_.final_norm.data(),
             &xn_[static_cast<size_t>(i * h)], 1, h, static_cast<float>(hf_.rms_norm_eps));
  }
  logits_.resize(static_cast<size_t>(n * vs));
  gemm_bt(n, vs, h, 1.0f, xn_.data(), h, w_.lm_head.data(), h, logits_.data(), vs);
  const float* full = logits_.data();
  int64_t stride = vs;
  if (shard_.tp_size > 1) {
    // [tp x n x vs] -> [n x vocab]: rank r's slice holds tokens [r * vs, (r + 1) * vs).
    gathered_.resize(static_cast<size_t>(shard_.tp_size * n * vs));
    if (auto err = tp_->all_gather(logits_.data(), gathered_.data(),
                                   logits_.size() * sizeof(float)))
      return make_error(errc::transport_failed,
                        fmt::format("hf model: TP all_gather of the logits failed on tp rank "
                                    "{} of {}: {}",
                                    shard_.tp_rank, shard_.tp_size, describe(err)));
    logits_.resize(static_cast<size_t>(n * vocab));
    for (int rk = 0; rk < shard_.tp_size; ++rk)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t first = rk * vs, count = std::min(vs, vocab - first);
        if (count > 0)
          std::copy_n(&gathered_[static_cast<size_t>((rk * n + i) * vs)], count,
                      &logits_[static_cast<size_t>(i * vocab + first)]);
      }
    full = logits_.data();
    stride = vocab;
  }
  bool any_logprobs = false;
  for (const auto& r : rows_)
    any_logprobs = any_logprobs || r.kv->sampling.logprobs >= 0;
  if (any_logprobs)
    out.logprobs.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto& r = rows_[static_cast<size_t>(i)];
    // The sampled token's position in its request: every token before it.
    const int64_t position = r.pos0 + r.count;
    out.sampled.push_back(
      sample_token(full + i * stride, vocab, r.kv->sampling, r.kv->seed, position, sampler_,
                   any_logprobs ? &out.logprobs[static_cast<size_t>(i)] : nullptr,
                   position - r.kv->prompt_len, &hf_.eos_token_ids));
  }
  if (cfg_.return_hidden)
    out.hidden.assign(xn_.begin(), xn_.begin() + static_cast<std::ptrdiff_t>(n * h));
  return caf::none;
}

void llama_model::rollback() {
  for (const auto& r : rows_) {
    const auto keep = static_cast<size_t>(r.pos0 * s_.kv_heads * hf_.head_dim);
    for (auto& k : r.kv->k)
      k.resize(std::min(k.size(), keep));
    for (auto& v : r.kv->v)
      v.resize(std::min(v.size(), keep));
  }
  for (const auto& id : inserted_)
    cache_.erase(id);
  rows_.clear();
  inserted_.clear();
}

void llama_model::commit() {
  for (const auto& r : rows_) {
    r.kv->len = r.pos0 + r.count;
    cached_tokens_ += r.count;
  }
  rows_.clear();
  inserted_.clear();
}

} // namespace cafex::hf
