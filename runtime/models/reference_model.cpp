#include "runtime/models/reference_model.hpp"

#include <algorithm>
#include <cmath>
#include <exception>

#include <cblas.h>
#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/models/tensor_math.hpp"

namespace cafex {

namespace {

// Queries of one request attended at once: bounds the score scratch to chunk x positions.
constexpr int64_t query_chunk = 128;

// How B is stored: as op(B) itself ([k x n]), or as its transpose ([n x k], e.g. keys).
enum class b_layout { plain, transposed };

// Row-major C[m x n] = alpha * A[m x k] * op(B) where op(B) is [k x n].
void gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c, int64_t ldc,
          b_layout layout = b_layout::plain) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans,
              layout == b_layout::transposed ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b,
              static_cast<int>(ldb), 0.0f, c, static_cast<int>(ldc));
}

} // namespace

caf::error reference_model::load(const model_config& cfg, const shard_info& shard,
                                 collective& tp) {
  loaded_ = false;
  cache_.clear();
  w_ = shard_weights{};
  if (auto err = check_reference_config(cfg, shard, tp))
    return err;
  try {
    cfg_ = cfg;
    shard_ = shard;
    tp_ = &tp;
    layers_ = stage_layers(cfg.num_layers, shard.pp_size, shard.pp_rank);
    first_stage_ = shard.pp_rank == 0;
    last_stage_ = shard.pp_rank == shard.pp_size - 1;
    head_dim_ = cfg.hidden_size / cfg.num_heads;
    local_heads_ = cfg.num_heads / shard.tp_size;
    block_ = cfg.ffn_size / cfg.ffn_blocks;
    local_blocks_ = cfg.ffn_blocks / shard.tp_size;
    w_ = make_shard_weights(cfg, shard);
    pos_freqs_ = position_frequencies(static_cast<size_t>(cfg.hidden_size));
  } catch (const std::exception& e) {
    w_ = shard_weights{};
    return make_error(errc::model_failed,
                      fmt::format("reference model: building the weights of tp rank {}, "
                                  "pp rank {} failed: {}: use a smaller model config",
                                  shard.tp_rank, shard.pp_rank, e.what()));
  }
  loaded_ = true;
  return caf::none;
}

caf::error reference_model::validate(const scheduler_output& step,
                                     const intermediate_tensors* input,
                                     int64_t& num_tokens) const {
  auto live_len = [this](const std::string& id) -> int64_t {
    auto i = cache_.find(id);
    return i == cache_.end() ? -1 : i->second.len;
  };
  return check_reference_step(cfg_, shard_, "reference model", step, input, live_len,
                              num_tokens);
}

caf::expected<stage_result> reference_model::execute(const scheduler_output& step,
                                                     const intermediate_tensors* input) {
  if (!loaded_)
    return make_error(errc::not_ready, "reference model: execute() before a successful "
                                       "load(): load the shard first");
  rows_.clear();
  inserted_.clear();
  try {
    for (const auto& id : step.finished)
      cache_.erase(id); // unknown ids are ignored
    stage_result res;
    res.to_next.hidden_size = cfg_.hidden_size;
    res.output.step_id = step.step_id;
    int64_t n = 0;
    if (auto err = validate(step, input, n))
      return err;
    if (n == 0)
      return res;
    plan(step);
    if (first_stage_)
      embed(step);
    else
      x_.assign(input->hidden.begin(), input->hidden.end());
    for (int l = 0; l < layers_.count; ++l) {
      auto err = attention(l);
      if (!err)
        err = mlp(l);
      if (err) {
        rollback();
        return err;
      }
    }
    if (last_stage_) {
      sample(step, res.output);
    } else {
      res.to_next.num_tokens = tokens_;
      res.to_next.hidden = x_;
    }
    commit();
    return res;
  } catch (const std::exception& e) {
    rollback();
    return make_error(errc::model_failed,
                      fmt::format("reference model (tp rank {}, pp rank {}), step {}: {}",
                                  shard_.tp_rank, shard_.pp_rank, step.step_id, e.what()));
  }
}

void reference_model::plan(const scheduler_output& step) {
  const size_t slots = static_cast<size_t>(layers_.count) * local_heads_;
  int64_t row = 0;
  for (const auto& r : step.new_requests) {
    auto& kv = cache_[r.req_id];
    kv.sampling = r.sampling;
    kv.seed = r.sampling.seed >= 0 ? static_cast<uint64_t>(r.sampling.seed)
                                   : default_seed(r.req_id);
    kv.prompt_len = static_cast<int64_t>(r.prompt.size());
    inserted_.push_back(r.req_id);
    kv.k.resize(slots);
    kv.v.resize(slots);
    auto count = static_cast<int64_t>(r.prompt.size());
    rows_.push_back(step_row{&kv, row, count, 0});
    row += count;
  }
  for (const auto& r : step.cached_requests) {
    auto& kv = cache_.at(r.req_id);
    rows_.push_back(step_row{&kv, row, 1, kv.len});
    ++row;
  }
  tokens_ = row;
  const auto th = static_cast<size_t>(tokens_) * cfg_.hidden_size;
  x_.resize(th);
  xn_.resize(th);
  part_.resize(th);
  acc_.resize(th);
  qkv_.resize(static_cast<size_t>(tokens_) * 3 * head_dim_);
  attn_.resize(static_cast<size_t>(tokens_) * head_dim_);
  up_.resize(static_cast<size_t>(tokens_) * block_);
}

void reference_model::embed(const scheduler_output& step) {
  const size_t h = static_cast<size_t>(cfg_.hidden_size);
  auto put = [&](int64_t row, int32_t token, int64_t pos) {
    float* dst = &x_[static_cast<size_t>(row) * h];
    std::copy_n(&w_.embed[static_cast<size_t>(token) * h], h, dst);
    add_position_encoding(dst, pos, pos_freqs_, h);
  };
  size_t i = 0;
  for (const auto& r : step.new_requests) {
    const auto& row = rows_[i++];
    for (int64_t t = 0; t < row.count; ++t)
      put(row.row0 + t, r.prompt[static_cast<size_t>(t)], t);
  }
  for (const auto& r : step.cached_requests) {
    const auto& row = rows_[i++];
    put(row.row0, r.token, row.pos0);
  }
}

caf::error reference_model::attention(int l) {
  const auto& w = w_.layers[static_cast<size_t>(l)];
  const int64_t h = cfg_.hidden_size, d = head_dim_, t = tokens_;
  rmsnorm(x_.data(), w.attn_norm.data(), xn_.data(), static_cast<size_t>(t),
          static_cast<size_t>(h));
  std::fill(acc_.begin(), acc_.end(), 0);
  for (int i = 0; i < local_heads_; ++i) {
    // Same shapes whatever the TP size: one head's QKV, attention and output projection.
    gemm(t, 3 * d, h, 1.0f, xn_.data(), h, &w.wqkv[static_cast<size_t>(i * h * 3 * d)], 3 * d,
         qkv_.data(), 3 * d);
    for (const auto& r : rows_)
      attend_one_head(l, i, r);
    gemm(t, h, d, 1.0f, attn_.data(), d, &w.wo[static_cast<size_t>(i * d * h)], h,
         part_.data(), h);
    accumulate_fixed(part_.data(), acc_.data(), acc_.size());
  }
  return reduce("attention", l);
}

void reference_model::attend_one_head(int l, int head, const step_row& r) {
  const int64_t d = head_dim_;
  const size_t slot = static_cast<size_t>(l) * local_heads_ + head;
  auto& k = r.kv->k[slot];
  auto& v = r.kv->v[slot];
  const int64_t total = r.pos0 + r.count;
  k.resize(static_cast<size_t>(total * d));
  v.resize(static_cast<size_t>(total * d));
  for (int64_t i = 0; i < r.count; ++i) {
    const float* src = &qkv_[static_cast<size_t>((r.row0 + i) * 3 * d)];
    std::copy_n(src + d, d, &k[static_cast<size_t>((r.pos0 + i) * d)]);
    std::copy_n(src + 2 * d, d, &v[static_cast<size_t>((r.pos0 + i) * d)]);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (int64_t q0 = 0; q0 < r.count; q0 += query_chunk) {
    const int64_t qn = std::min(query_chunk, r.count - q0);
    const int64_t keys = r.pos0 + q0 + qn; // positions the chunk's last query sees
    if (scores_.size() < static_cast<size_t>(qn * keys))
      scores_.resize(static_cast<size_t>(qn * keys));
    gemm(qn, keys, d, scale, &qkv_[static_cast<size_t>((r.row0 + q0) * 3 * d)], 3 * d,
         k.data(), d, scores_.data(), keys, b_layout::transposed);
    for (int64_t i = 0; i < qn; ++i) {
      float* s = &scores_[static_cast<size_t>(i * keys)];
      const int64_t visible = r.pos0 + q0 + i + 1; // causal mask
      softmax_inplace(s, static_cast<size_t>(visible));
      std::fill(s + visible, s + keys, 0.0f);
    }
    gemm(qn, d, keys, 1.0f, scores_.data(), keys, v.data(), d,
         &attn_[static_cast<size_t>((r.row0 + q0) * d)], d);
  }
}

caf::error reference_model::mlp(int l) {
  const auto& w = w_.layers[static_cast<size_t>(l)];
  const int64_t h = cfg_.hidden_size, fb = block_, t = tokens_;
  rmsnorm(x_.data(), w.mlp_norm.data(), xn_.data(), static_cast<size_t>(t),
          static_cast<size_t>(h));
  std::fill(acc_.begin(), acc_.end(), 0);
  for (int b = 0; b < local_blocks_; ++b) {
    // Same shapes whatever the TP size: one block's up projection and down projection.
    gemm(t, fb, h, 1.0f, xn_.data(), h, &w.wup[static_cast<size_t>(b * h * fb)], fb,
         up_.data(), fb);
    silu_inplace(up_.data(), up_.size());
    gemm(t, h, fb, 1.0f, up_.data(), fb, &w.wdown[static_cast<size_t>(b * fb * h)], h,
         part_.data(), h);
    accumulate_fixed(part_.data(), acc_.data(), acc_.size());
  }
  return reduce("MLP", l);
}

caf::error reference_model::reduce(const char* what, int l) {
  if (auto err = tp_->all_reduce_sum(acc_.data(), acc_.size()))
    return make_error(errc::transport_failed,
                      fmt::format("reference model: TP all_reduce of the {} output of "
                                  "layer {} failed on tp rank {} of {}, pp rank {}: {}",
                                  what, layers_.first + l, shard_.tp_rank, shard_.tp_size,
                                  shard_.pp_rank, describe(err)));
  add_from_fixed(acc_.data(), x_.data(), acc_.size());
  return caf::none;
}

void reference_model::sample(const scheduler_output& step, model_runner_output& out) {
  const size_t h = static_cast<size_t>(cfg_.hidden_size);
  const size_t vocab = static_cast<size_t>(cfg_.vocab_size);
  const size_t n = rows_.size();
  for (size_t i = 0; i < n; ++i) {
    const auto last = static_cast<size_t>(rows_[i].row0 + rows_[i].count - 1);
    rmsnorm(&x_[last * h], w_.final_norm.data(), &xn_[i * h], 1, h);
  }
  logits_.resize(n * vocab);
  gemm(static_cast<int64_t>(n), static_cast<int64_t>(vocab), static_cast<int64_t>(h), 1.0f,
       xn_.data(), static_cast<int64_t>(h), w_.lm_head.data(), static_cast<int64_t>(vocab),
       logits_.data(), static_cast<int64_t>(vocab));
  out.req_ids.reserve(n);
  out.sampled.reserve(n);
  for (const auto& r : step.new_requests)
    out.req_ids.push_back(r.req_id);
  for (const auto& r : step.cached_requests)
    out.req_ids.push_back(r.req_id);
  // Each request under its own sampling parameters (greedy by default), as the hf model.
  bool any_logprobs = false;
  for (const auto& r : rows_)
    any_logprobs = any_logprobs || r.kv->sampling.logprobs >= 0;
  if (any_logprobs)
    out.logprobs.resize(n);
  const auto v = static_cast<int64_t>(vocab);
  for (size_t i = 0; i < n; ++i) {
    const auto& r = rows_[i];
    const int64_t position = r.pos0 + r.count; // every token before the sampled one
    out.sampled.push_back(
      sample_token(&logits_[i * vocab], v, r.kv->sampling, r.kv->seed, position, sampler_,
                   any_logprobs ? &out.logprobs[i] : nullptr, position - r.kv->prompt_len));
  }
  if (cfg_.return_hidden)
    out.hidden.assign(xn_.begin(), xn_.begin() + static_cast<std::ptrdiff_t>(n * h));
}

void reference_model::rollback() {
  // Undo the running step: cached requests lose this step's KV rows, new ones vanish.
  const auto d = static_cast<size_t>(head_dim_);
  for (const auto& r : rows_) {
    const auto keep = static_cast<size_t>(r.pos0) * d;
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

void reference_model::commit() {
  for (const auto& r : rows_)
    r.kv->len = r.pos0 + r.count;
  rows_.clear();
  inserted_.clear();
}

} // namespace cafex
