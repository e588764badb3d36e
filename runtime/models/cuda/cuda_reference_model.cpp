#include "runtime/models/cuda/cuda_reference_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include <fmt/format.h>

#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/error.hpp"
#include "runtime/models/tensor_math.hpp"

namespace cafex {

namespace k = cuda_kernels;

cuda_reference_model::cuda_reference_model(cuda_model_options opts) : opts_(opts) {}

cuda_reference_model::~cuda_reference_model() {
  if (device_ >= 0)
    cudaSetDevice(device_); // free on the shard's device whatever thread destroys it
}

caf::error cuda_reference_model::upload(device_buffer& dst, const std::vector<float>& src) {
  const size_t bytes = src.size() * sizeof(float);
  if (auto err = dst.reserve(bytes))
    return err;
  // At load time nothing runs on the device, so a synchronous copy cannot hang.
  return CAFEX_CHECK(cudaMemcpy(dst.data(), src.data(), bytes, cudaMemcpyHostToDevice));
}

caf::error cuda_reference_model::load(const model_config& cfg, const shard_info& shard,
                                      collective& tp) {
  loaded_ = false;
  broken_ = false;
  cache_.clear();
  retired_.clear();
  w_.clear();
  if (auto err = check_reference_config(cfg, shard, tp))
    return err;
  auto ctx = [&] {
    return fmt::format("cuda reference model (tp rank {}, pp rank {})", shard.tp_rank,
                       shard.pp_rank);
  };
  if (auto err = CAFEX_CHECK(cudaGetDevice(&device_)))
    return with_context(ctx() + ": no CUDA device", err);
  cfg_ = cfg;
  shard_ = shard;
  tp_ = &tp;
  tp_dev_ = tp.size() > 1 ? dynamic_cast<device_collective*>(&tp) : nullptr;
  layers_ = stage_layers(cfg.num_layers, shard.pp_size, shard.pp_rank);
  first_stage_ = shard.pp_rank == 0;
  last_stage_ = shard.pp_rank == shard.pp_size - 1;
  head_dim_ = cfg.hidden_size / cfg.num_heads;
  local_heads_ = cfg.num_heads / shard.tp_size;
  block_ = cfg.ffn_size / cfg.ffn_blocks;
  local_blocks_ = cfg.ffn_blocks / shard.tp_size;
  const int max_keys = k::attention_max_keys(head_dim_);
  if (cfg.max_seq_len > max_keys)
    return make_error(errc::invalid_argument,
                      fmt::format("{}: max_seq_len {} exceeds the {} positions the attention "
                                  "kernel holds in shared memory on GPU {} for head_dim {}: "
                                  "lower max_seq_len",
                                  ctx(), cfg.max_seq_len, max_keys, device_, head_dim_));
  auto err = stream_.create();
  if (!err) {
    auto engine = gemm_engine::create(opts_.gemm, stream_.get());
    if (engine)
      gemm_ = std::move(*engine);
    else
      err = engine.error();
  }
  try {
    if (!err) {
      auto w = make_shard_weights(cfg, shard);
      embed_ = std::move(w.embed);
      pos_freqs_ = position_frequencies(static_cast<size_t>(cfg.hidden_size));
      if (last_stage_) {
        err = upload(final_norm_, w.final_norm);
        if (!err)
          err = upload(lm_head_, w.lm_head);
      }
      w_.resize(w.layers.size());
      for (size_t l = 0; l < w.layers.size() && !err; ++l) {
        const auto& src = w.layers[l];
        auto& dst = w_[l];
        for (auto [d, s] : {std::pair{&dst.attn_norm, &src.attn_norm},
                            {&dst.mlp_norm, &src.mlp_norm},
                            {&dst.wqkv, &src.wqkv},
                            {&dst.wo, &src.wo},
                            {&dst.wup, &src.wup},
                            {&dst.wdown, &src.wdown}})
          if (!err)
            err = upload(*d, *s);
      }
    }
  } catch (const std::exception& e) {
    err = make_error(errc::model_failed, fmt::format("building the weights failed: {}: use a "
                                                     "smaller model config",
                                                     e.what()));
  }
  if (err) {
    w_.clear();
    return with_context(fmt::format("{} on GPU {}", ctx(), device_), err);
  }
  loaded_ = true;
  return caf::none;
}

caf::error cuda_reference_model::grow(kv_entry& kv, int64_t need) {
  if (need <= kv.cap)
    return caf::none;
  int64_t cap = std::max<int64_t>({need, 2 * kv.cap, 16});
  cap = std::max<int64_t>(std::min<int64_t>(cap, cfg_.max_seq_len), need);
  const size_t slabs = static_cast<size_t>(layers_.count) * local_heads_;
  const size_t d = static_cast<size_t>(head_dim_);
  if (slabs > 0) {
    device_buffer nk, nv;
    if (auto err = nk.reserve(slabs * cap * d * sizeof(float)))
      return err;
    if (auto err = nv.reserve(slabs * cap * d * sizeof(float)))
      return err;
    if (kv.len > 0) {
      // Keep the committed rows of every (layer, head) slab at the new stride.
      const size_t width = kv.len * d * sizeof(float);
      for (auto [dst, src] : {std::pair{&nk, &kv.k}, {&nv, &kv.v}})
        if (auto err = CAFEX_CHECK(cudaMemcpy2DAsync(dst->data(), cap * d * sizeof(float),
                                                     src->data(), kv.cap * d * sizeof(float),
                                                     width, slabs, cudaMemcpyDeviceToDevice,
                                                     stream_.get())))
          return err;
    }
    // The old slabs may still be read by the copies: free them after the step's wait.
    retired_.push_back(std::move(kv.k));
    retired_.push_back(std::move(kv.v));
    kv.k = std::move(nk);
    kv.v = std::move(nv);
  }
  kv.cap = cap;
  return caf::none;
}

caf::error cuda_reference_model::plan(const scheduler_output& step,
                                      const intermediate_tensors* input) {
  const size_t h = static_cast<size_t>(cfg_.hidden_size);
  const size_t d = static_cast<size_t>(head_dim_);
  std::vector<k::attn_row> rows;
  std::vector<int> last;
  step_kv_.clear();
  step_end_.clear();
  max_keys_ = 0;
  auto add = [&](kv_entry& kv, int64_t pos0, int64_t count) -> caf::error {
    if (auto err = grow(kv, pos0 + count))
      return err;
    for (int64_t t = 0; t < count; ++t)
      rows.push_back(k::attn_row{kv.k.as<float>(), kv.v.as<float>(), static_cast<int>(kv.cap),
                                 static_cast<int>(pos0 + t)});
    last.push_back(static_cast<int>(rows.size() - 1));
    step_kv_.push_back(&kv);
    step_end_.push_back(pos0 + count);
    max_keys_ = std::max(max_keys_, static_cast<int>(pos0 + count));
    return caf::none;
  };
  for (const auto& r : step.new_requests) {
    auto& slot = cache_[r.req_id];
    slot = std::make_unique<kv_entry>();
    inserted_.push_back(r.req_id);
    if (auto err = add(*slot, 0, static_cast<int64_t>(r.prompt.size())))
      return err;
  }
  for (const auto& r : step.cached_requests) {
    auto& kv = *cache_.at(r.req_id);
    if (auto err = add(kv, kv.len, 1))
      return err;
  }
  tokens_ = static_cast<int64_t>(rows.size());
  const size_t t = static_cast<size_t>(tokens_);
  const size_t n = last.size();
  const size_t lh = static_cast<size_t>(local_heads_), lb = static_cast<size_t>(local_blocks_);
  const size_t fb = static_cast<size_t>(block_);
  const size_t vocab = static_cast<size_t>(cfg_.vocab_size);
  for (auto [buf, bytes] : std::initializer_list<std::pair<device_buffer*, size_t>>{
         {&x_, t * h * 4},
         {&xn_, t * h * 4},
         {&qkv_, lh * t * 3 * d * 4},
         {&attn_, lh * t * d * 4},
         {&parts_, std::max(lh, lb) * t * h * 4},
         {&up_, lb * t * fb * 4},
         {&acc_, t * h * 8},
         {&rows_, t * sizeof(k::attn_row)},
         {&last_, n * sizeof(int)},
         {&logits_, n * vocab * 4},
         {&sampled_, n * 4}})
    if (auto err = buf->reserve(bytes))
      return err;
  for (auto [buf, bytes] :
       std::initializer_list<std::pair<pinned_buffer*, size_t>>{{&pin_x_, t * h * 4},
                                                                {&pin_rows_,
                                                                 t * sizeof(k::attn_row)},
                                                                {&pin_last_, n * sizeof(int)},
                                                                {&pin_acc_, t * h * 8},
                                                                {&pin_sampled_, n * 4},
                                                                {&pin_hidden_, t * h * 4}})
    if (auto err = buf->reserve(bytes))
      return err;
  // Stage 0 embeds on the host exactly as the CPU model does; later stages take `input`.
  float* px = pin_x_.as<float>();
  if (first_stage_) {
    size_t row = 0;
    auto put = [&](int32_t token, int64_t pos) {
      float* dst = px + row++ * h;
      std::copy_n(&embed_[static_cast<size_t>(token) * h], h, dst);
      add_position_encoding(dst, pos, pos_freqs_, h);
    };
    for (const auto& r : step.new_requests)
      for (size_t i = 0; i < r.prompt.size(); ++i)
        put(r.prompt[i], static_cast<int64_t>(i));
    for (size_t i = 0; i < step.cached_requests.size(); ++i)
      put(step.cached_requests[i].token, step_end_[step.new_requests.size() + i] - 1);
  } else {
    std::copy(input->hidden.begin(), input->hidden.end(), px);
  }
  std::copy(rows.begin(), rows.end(), pin_rows_.as<k::attn_row>());
  std::copy(last.begin(), last.end(), pin_last_.as<int>());
  auto s = stream_.get();
  if (auto err = CAFEX_CHECK(
        cudaMemcpyAsync(x_.data(), px, t * h * 4, cudaMemcpyHostToDevice, s)))
    return err;
  if (auto err = CAFEX_CHECK(cudaMemcpyAsync(rows_.data(), pin_rows_.as<void>(),
                                             t * sizeof(k::attn_row), cudaMemcpyHostToDevice,
                                             s)))
    return err;
  return CAFEX_CHECK(cudaMemcpyAsync(last_.data(), pin_last_.as<void>(), n * sizeof(int),
                                     cudaMemcpyHostToDevice, s));
}

caf::error cuda_reference_model::gemm(int m, int n, int kk, const float* a, int lda,
                                      long long sa, const float* b, int ldb, long long sb,
                                      float* c, int ldc, long long sc, int batch) {
  gemm_args g;
  g.m = m;
  g.n = n;
  g.k = kk;
  g.a = a;
  g.lda = lda;
  g.stride_a = sa;
  g.b = b;
  g.ldb = ldb;
  g.stride_b = sb;
  g.c = c;
  g.ldc = ldc;
  g.stride_c = sc;
  g.batch = batch;
  return gemm_->run(g);
}

caf::error cuda_reference_model::reduce_into_x(const char* what, int l) {
  const size_t n = static_cast<size_t>(tokens_) * cfg_.hidden_size;
  auto s = stream_.get();
  if (tp_->size() > 1) {
    caf::error err;
    if (tp_dev_ != nullptr) {
      err = tp_dev_->enqueue_all_reduce_sum(acc_.as<int64_t>(), n, s);
    } else {
      // Host collective: stage through pinned memory, waiting with a deadline.
      err = CAFEX_CHECK(
        cudaMemcpyAsync(pin_acc_.as<void>(), acc_.data(), n * 8, cudaMemcpyDeviceToHost, s));
      if (!err)
        err = wait_stream(s, opts_.step_timeout, "copying TP partial sums to the host");
      if (!err)
        err = tp_->all_reduce_sum(pin_acc_.as<int64_t>(), n);
      if (!err)
        err = CAFEX_CHECK(
          cudaMemcpyAsync(acc_.data(), pin_acc_.as<void>(), n * 8, cudaMemcpyHostToDevice, s));
    }
    if (err)
      return make_error(errc::transport_failed,
                        fmt::format("TP all_reduce of the {} output of layer {} failed on tp "
                                    "rank {} of {}, pp rank {}: {}",
                                    what, layers_.first + l, shard_.tp_rank, shard_.tp_size,
                                    shard_.pp_rank, describe(err)));
  }
  return k::add_from_fixed(acc_.as<int64_t>(), x_.as<float>(), n, s);
}

caf::error cuda_reference_model::layer(int l) {
  const auto& w = w_[static_cast<size_t>(l)];
  const int t = static_cast<int>(tokens_), h = cfg_.hidden_size, d = head_dim_;
  const int fb = block_, lh = local_heads_, lb = local_blocks_;
  const long long th = static_cast<long long>(t) * h;
  auto s = stream_.get();
  float* x = x_.as<float>();
  float* xn = xn_.as<float>();
  auto rows = rows_.as<k::attn_row>();
  const float scale = 1.0f / std::sqrt(static_cast<float>(d)); // as the CPU model
  caf::error err = k::rmsnorm(x, w.attn_norm.as<float>(), xn, t, h, nullptr, s);
  // Every local head at once; each head's product has the shape it has for any TP size.
  if (!err)
    err = gemm(t, 3 * d, h, xn, h, 0, w.wqkv.as<float>(), 3 * d,
               static_cast<long long>(h) * 3 * d, qkv_.as<float>(), 3 * d,
               static_cast<long long>(t) * 3 * d, lh);
  if (!err)
    err = k::append_kv(qkv_.as<float>(), rows, t, lh, l, d, s);
  if (!err)
    err = k::attention(qkv_.as<float>(), rows, t, lh, l, d, scale, max_keys_,
                       attn_.as<float>(), s);
  if (!err)
    err = gemm(t, h, d, attn_.as<float>(), d, static_cast<long long>(t) * d, w.wo.as<float>(),
               h, static_cast<long long>(d) * h, parts_.as<float>(), h, th, lh);
  if (!err)
    err = k::fixed_sum(parts_.as<float>(), lh, th, th, acc_.as<int64_t>(), s);
  if (!err)
    err = reduce_into_x("attention", l);
  if (!err)
    err = k::rmsnorm(x, w.mlp_norm.as<float>(), xn, t, h, nullptr, s);
  if (!err)
    err = gemm(t, fb, h, xn, h, 0, w.wup.as<float>(), fb, static_cast<long long>(h) * fb,
               up_.as<float>(), fb, static_cast<long long>(t) * fb, lb);
  if (!err)
    err = k::silu(up_.as<float>(), static_cast<size_t>(lb) * t * fb, s);
  if (!err)
    err = gemm(t, h, fb, up_.as<float>(), fb, static_cast<long long>(t) * fb,
               w.wdown.as<float>(), h, static_cast<long long>(fb) * h, parts_.as<float>(), h,
               th, lb);
  if (!err)
    err = k::fixed_sum(parts_.as<float>(), lb, th, th, acc_.as<int64_t>(), s);
  if (!err)
    err = reduce_into_x("MLP", l);
  return err;
}

caf::error cuda_reference_model::sample(size_t requests) {
  const int n = static_cast<int>(requests), h = cfg_.hidden_size, vocab = cfg_.vocab_size;
  auto s = stream_.get();
  auto err = k::rmsnorm(x_.as<float>(), final_norm_.as<float>(), xn_.as<float>(), n, h,
                        last_.as<int>(), s);
  if (!err)
    err = gemm(n, vocab, h, xn_.as<float>(), h, 0, lm_head_.as<float>(), vocab, 0,
               logits_.as<float>(), vocab, 0, 1);
  if (!err)
    err = k::argmax(logits_.as<float>(), n, vocab, sampled_.as<int32_t>(), s);
  if (!err)
    err = CAFEX_CHECK(cudaMemcpyAsync(pin_sampled_.as<void>(), sampled_.data(), requests * 4,
                                      cudaMemcpyDeviceToHost, s));
  if (!err && cfg_.return_hidden)
    err = CAFEX_CHECK(cudaMemcpyAsync(pin_hidden_.as<void>(), xn_.data(),
                                      requests * static_cast<size_t>(h) * 4,
                                      cudaMemcpyDeviceToHost, s));
  return err;
}

caf::error cuda_reference_model::finish_step() {
  auto s = stream_.get();
  auto err = tp_dev_ != nullptr ? tp_dev_->wait(s)
                                : wait_stream(s, opts_.step_timeout, "the step's GPU work");
  if (!err)
    retired_.clear();
  return err;
}

void cuda_reference_model::rollback() {
  // Drain the stream before freeing what it may still use; if that fails the shard is
  // unusable (the caller reloads it) and nothing is freed under a running kernel.
  if (finish_step())
    broken_ = true;
  for (const auto& id : inserted_) {
    auto i = cache_.find(id);
    if (i == cache_.end())
      continue;
    if (broken_) {
      retired_.push_back(std::move(i->second->k));
      retired_.push_back(std::move(i->second->v));
    }
    cache_.erase(i);
  }
  inserted_.clear();
  step_kv_.clear();
  step_end_.clear();
}

caf::error cuda_reference_model::fail(const scheduler_output& step, const caf::error& err) {
  rollback();
  return with_context(fmt::format("cuda reference model (tp rank {}, pp rank {}, GPU {}), "
                                  "step {}{}",
                                  shard_.tp_rank, shard_.pp_rank, device_, step.step_id,
                                  broken_ ? " (shard broken: reload it)" : ""),
                      err);
}

caf::expected<stage_result> cuda_reference_model::execute(const scheduler_output& step,
                                                          const intermediate_tensors* input) {
  if (!loaded_)
    return make_error(errc::not_ready, "cuda reference model: execute() before a successful "
                                       "load(): load the shard first");
  if (broken_)
    return make_error(errc::model_failed,
                      fmt::format("cuda reference model (tp rank {}, pp rank {}, GPU {}): an "
                                  "earlier step left the GPU stream stuck: reload the shard",
                                  shard_.tp_rank, shard_.pp_rank, device_));
  inserted_.clear();
  try {
    if (auto err = CAFEX_CHECK(cudaSetDevice(device_)))
      return fail(step, err);
    retired_.clear(); // the previous step drained the stream
    for (const auto& id : step.finished)
      cache_.erase(id); // unknown ids are ignored
    stage_result res;
    res.to_next.hidden_size = cfg_.hidden_size;
    res.output.step_id = step.step_id;
    auto live_len = [this](const std::string& id) -> int64_t {
      auto i = cache_.find(id);
      return i == cache_.end() ? -1 : i->second->len;
    };
    int64_t n = 0;
    if (auto err = check_reference_step(cfg_, shard_, "cuda reference model", step, input,
                                        live_len, n))
      return err;
    // Its sampler is an argmax on the device: anything else would be silently ignored.
    for (const auto& r : step.new_requests)
      if (r.sampling.temperature > 0 || r.sampling.logprobs >= 0 || r.sampling.min_tokens > 0)
        return make_error(errc::invalid_argument,
                          fmt::format("cuda reference model: request '{}' asks for sampling "
                                      "(temperature, logprobs or min_tokens); this model "
                                      "samples greedily only: use the CPU reference model "
                                      "or an hf model (--model)",
                                      r.req_id));
    if (n == 0)
      return res;
    if (auto err = plan(step, input))
      return fail(step, err);
    for (int l = 0; l < layers_.count; ++l)
      if (auto err = layer(l))
        return fail(step, err);
    const size_t requests = step.num_requests();
    const size_t h = static_cast<size_t>(cfg_.hidden_size);
    caf::error err;
    if (last_stage_)
      err = sample(requests);
    else
      err = CAFEX_CHECK(cudaMemcpyAsync(pin_hidden_.as<void>(), x_.data(),
                                        static_cast<size_t>(tokens_) * h * 4,
                                        cudaMemcpyDeviceToHost, stream_.get()));
    if (!err)
      err = finish_step();
    if (err)
      return fail(step, err);
    if (last_stage_) {
      auto& out = res.output;
      for (const auto& r : step.new_requests)
        out.req_ids.push_back(r.req_id);
      for (const auto& r : step.cached_requests)
        out.req_ids.push_back(r.req_id);
      const int32_t* tok = pin_sampled_.as<int32_t>();
      out.sampled.assign(tok, tok + requests);
      if (cfg_.return_hidden) {
        const float* hid = pin_hidden_.as<float>();
        out.hidden.assign(hid, hid + requests * h);
      }
    } else {
      res.to_next.num_tokens = tokens_;
      const float* hid = pin_hidden_.as<float>();
      res.to_next.hidden.assign(hid, hid + static_cast<size_t>(tokens_) * h);
    }
    for (size_t i = 0; i < step_kv_.size(); ++i) // commit
      step_kv_[i]->len = step_end_[i];
    inserted_.clear();
    step_kv_.clear();
    step_end_.clear();
    return res;
  } catch (const std::exception& e) {
    return fail(step, make_error(errc::model_failed, e.what()));
  }
}

} // namespace cafex
