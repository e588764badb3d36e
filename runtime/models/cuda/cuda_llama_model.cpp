#include "runtime/models/cuda/cuda_llama_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>

#include <fmt/format.h>

#include "runtime/error.hpp"
#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_kernels.hpp"

namespace cafex {

namespace lk = llama_kernels;

namespace {

// KV positions every shard holds by default: the same number everywhere (a budget taken
// from each GPU's free memory would differ between stages, which must admit alike).
constexpr int64_t default_kv_tokens = 131072;

float bf16_value(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f = 0.0f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Decode batch sizes captured as CUDA graphs (vLLM's capture sizes up to 128); a decode
// step of n requests replays the smallest bucket >= n, padded.
constexpr int graph_buckets[] = {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128};

int64_t blocks_for(int64_t positions) {
  return (positions + lk::kv_block - 1) / lk::kv_block;
}

size_t align16(size_t n) {
  return (n + 15) / 16 * 16;
}

} // namespace

cuda_llama_model::cuda_llama_model(cuda_llama_options opts) : opts_(opts) {}

cuda_llama_model::~cuda_llama_model() {
  if (device_ >= 0)
    cudaSetDevice(device_); // free on the shard's device whatever thread destroys it
  drop_graphs();
}

std::string cuda_llama_model::who() const {
  return fmt::format("hf model on GPU {} (tp rank {}, pp rank {})", device_, shard_.tp_rank,
                     shard_.pp_rank);
}

caf::error cuda_llama_model::load(const model_config& cfg, const shard_info& shard,
                                  collective& tp) {
  loaded_ = false;
  broken_ = false;
  drop_graphs();
  graphs_ok_ = true;
  graph_note_.clear();
  reqs_.clear();
  w_.clear();
  shard_ = shard;
  if (cfg.path.empty())
    return make_error(errc::invalid_argument,
                      "hf model: no checkpoint directory: set model_config::path (--model)");
  if (tp.size() != shard.tp_size || tp.rank() != shard.tp_rank)
    return make_error(errc::invalid_argument,
                      "hf model: the TP group does not match the shard's TP rank and size");
  auto hf = hf::load_hf_config(cfg.path);
  if (!hf)
    return hf.error();
  if (auto err = hf::check_tp(*hf, shard.tp_size))
    return err;
  if (hf->head_dim > 256 || hf->head_dim % 2 != 0)
    return make_error(errc::invalid_config,
                      fmt::format("{}/config.json: head_dim {} is not supported on CUDA (an "
                                  "even number up to 256): run it with --device cpu",
                                  cfg.path, hf->head_dim));
  auto partition = hf::parse_layer_partition(cfg.pp_layer_partition);
  if (!partition)
    return partition.error();
  auto layers = hf::pp_indices(hf->num_layers, shard.pp_rank, shard.pp_size, *partition);
  if (!layers)
    return layers.error();
  if (auto err = CAFEX_CHECK(cudaGetDevice(&device_)))
    return with_context("hf model: no CUDA device", err);
  cfg_ = cfg;
  hf_ = std::move(*hf);
  tp_ = &tp;
  tp_dev_ = tp.size() > 1 ? dynamic_cast<device_collective*>(&tp) : nullptr;
  layers_ = *layers;
  s_ = hf::slices_of(hf_, shard.tp_rank, shard.tp_size);
  max_len_ = hf_.max_position;
  weight_bytes_ = 0;
  auto err = stream_.create();
  if (!err) {
    auto engine = gemm_engine::create(gemm_backend::cublas, stream_.get());
    if (engine)
      gemm_ = std::move(*engine);
    else
      err = with_context("the hf runner on CUDA needs cuBLAS", engine.error());
  }
  if (!err)
    err = upload_rope();
  try {
    if (!err)
      err = cfg.random_weights ? random_weights(cfg.seed) : load_weights(cfg);
    if (!err)
      err = make_kv_pool(cfg.kv_cache_tokens);
    if (!err && !cfg.enforce_eager && (shard.tp_size == 1 || tp_dev_ != nullptr))
      err = make_graph_buffers();
  } catch (const std::exception& e) {
    err = make_error(errc::model_failed,
                     fmt::format("loading the weights failed: {}", e.what()));
  }
  if (err) {
    w_.clear();
    return with_context(who(), err);
  }
  loaded_ = true;
  return caf::none;
}

caf::error cuda_llama_model::make_kv_pool(int64_t tokens) {
  if (tokens <= 0)
    tokens = std::max(default_kv_tokens, max_len_);
  const int64_t blocks = blocks_for(tokens);
  if (blocks > INT32_MAX)
    return make_error(errc::invalid_argument,
                      fmt::format("--kv-cache-tokens {} is more than the KV cache can index",
                                  tokens));
  const size_t block_bytes = static_cast<size_t>(layers_.count) * s_.kv_heads * lk::kv_block
                             * hf_.head_dim * 2;
  // One block more than the budget: the pad block of the CUDA graphs' pad rows.
  const size_t bytes = static_cast<size_t>(blocks + 1) * block_bytes;
  size_t free_mem = 0, total_mem = 0;
  if (auto err = CAFEX_CHECK(cudaMemGetInfo(&free_mem, &total_mem)))
    return err;
  if (2 * bytes > free_mem)
    return make_error(
      errc::model_failed,
      fmt::format("the KV cache of {} tokens needs {:.1f} GiB on GPU {}, which "
                  "has {:.1f} GiB free after the weights: lower "
                  "--kv-cache-tokens",
                  tokens, 2.0 * static_cast<double>(bytes) / (1 << 30), device_,
                  static_cast<double>(free_mem) / (1 << 30)));
  if (auto err = k_pool_.reserve(std::max<size_t>(bytes, 16)))
    return err;
  if (auto err = v_pool_.reserve(std::max<size_t>(bytes, 16)))
    return err;
  num_blocks_ = static_cast<int32_t>(blocks);
  free_blocks_.resize(static_cast<size_t>(blocks));
  for (int32_t b = 0; b < num_blocks_; ++b)
    free_blocks_[static_cast<size_t>(b)] = num_blocks_ - 1 - b; // block 0 is taken first
  return caf::none;
}

bool cuda_llama_model::drop_requests() {
  for (auto& [id, r] : reqs_)
    free_blocks_.insert(free_blocks_.end(), r->blocks.begin(), r->blocks.end());
  reqs_.clear();
  return true;
}

caf::error cuda_llama_model::admit(const scheduler_output& step) {
  rows_.clear();
  inserted_.clear();
  hf::admission_rules rules;
  rules.free = static_cast<int64_t>(free_blocks_.size());
  rules.budget = num_blocks_;
  rules.max_len = max_len_;
  rules.vocab = hf_.vocab_size;
  rules.unit = "KV cache block(s) of 16 positions";
  rules.cost = [](int64_t len, int64_t add) {
    return blocks_for(len + add) - blocks_for(len);
  };
  auto verdict = hf::admit_step(step, rules, [this](const std::string& id) -> int64_t {
    auto i = reqs_.find(id);
    return i == reqs_.end() ? -1 : i->second->len;
  });
  if (!verdict)
    return verdict.error();
  admission_ = std::move(*verdict);
  auto take = [this](request& r, int64_t positions) {
    while (static_cast<int64_t>(r.blocks.size()) < blocks_for(positions)) {
      r.blocks.push_back(free_blocks_.back()); // admission counted them
      free_blocks_.pop_back();
    }
  };
  const size_t n_new = step.new_requests.size();
  for (size_t i = 0; i < n_new; ++i) {
    if (!admission_.admitted(i))
      continue;
    const auto& nr = step.new_requests[i];
    auto& slot = reqs_[nr.req_id];
    slot = std::make_unique<request>();
    slot->prompt_len = static_cast<int64_t>(nr.prompt.size());
    slot->sampling = nr.sampling;
    slot->seed = nr.sampling.seed >= 0 ? static_cast<uint64_t>(nr.sampling.seed)
                                       : default_seed(nr.req_id);
    take(*slot, slot->prompt_len);
    inserted_.push_back(nr.req_id);
    rows_.push_back(step_row{slot.get(), 0, slot->prompt_len, nr.prompt.data()});
  }
  for (size_t i = 0; i < step.cached_requests.size(); ++i) {
    if (!admission_.admitted(n_new + i))
      continue;
    const auto& cr = step.cached_requests[i];
    auto& r = *reqs_.at(cr.req_id);
    take(r, r.len + 1);
    rows_.push_back(step_row{&r, r.len, 1, &cr.token});
  }
  tokens_ = 0;
  for (const auto& r : rows_)
    tokens_ += r.count;
  return caf::none;
}

caf::error cuda_llama_model::reserve(step_buffers& b, size_t t, size_t n, size_t table_ints) {
  const size_t h = static_cast<size_t>(hf_.hidden_size), d = static_cast<size_t>(hf_.head_dim);
  b.off_rows = align16(t * 4);
  b.off_last = b.off_rows + align16(t * sizeof(lk::kv_row));
  b.off_tables = b.off_last + align16(n * 4);
  b.in_bytes = b.off_tables + table_ints * 4;
  const size_t qn = static_cast<size_t>(s_.q_heads) * d;
  const size_t width = qn + 2 * static_cast<size_t>(s_.kv_heads) * d;
  const size_t inter = static_cast<size_t>(s_.inter), vs = static_cast<size_t>(s_.vocab);
  const size_t vocab = static_cast<size_t>(hf_.vocab_size);
  const size_t tp = static_cast<size_t>(shard_.tp_size);
  for (auto [buf, bytes] : std::initializer_list<std::pair<device_buffer*, size_t>>{
         {&b.in, b.in_bytes},
         {&b.x, t * h * 4},
         {&b.xn, t * h * 2},
         {&b.qkv, t * width * 4},
         {&b.attn, t * qn * 2},
         {&b.part, t * h * 4},
         {&b.gu, t * 2 * inter * 4},
         {&b.act, t * inter * 2},
         {&b.xlast, n * h * 2},
         {&b.logits, n * vs * 4},
         {&b.gathered, tp > 1 ? tp * n * vs * 4 : 0},
         {&b.full, tp > 1 ? n * vocab * 4 : 0},
         {&b.sampled, n * 4}})
    if (bytes > 0)
      if (auto err = buf->reserve(bytes))
        return err;
  const size_t host_sum = tp > 1 ? std::max(t * h, (tp + 1) * n * vs) * 4 : 0;
  for (auto [buf, bytes] : std::initializer_list<std::pair<pinned_buffer*, size_t>>{
         {&pin_in_, b.in_bytes},
         {&pin_hidden_, std::max(t * h * 4, n * h * 2)},
         {&pin_sampled_, n * 4},
         {&pin_sum_, tp_dev_ == nullptr ? host_sum : 0}})
    if (bytes > 0)
      if (auto err = buf->reserve(bytes))
        return err;
  return caf::none;
}

caf::error cuda_llama_model::stage_inputs(const intermediate_tensors* input, size_t padded) {
  const size_t t = static_cast<size_t>(tokens_), n = rows_.size();
  const size_t h = static_cast<size_t>(hf_.hidden_size);
  size_t table_ints = padded > t ? 1 : 0; // the pad rows' table: the pad block
  for (const auto& r : rows_)
    table_ints += r.req->blocks.size();
  if (padded == 0) {
    b_ = &eager_;
    if (auto err = reserve(eager_, t, n, table_ints))
      return err;
  } else {
    b_ = &graphed_; // sized once for the largest bucket: its addresses are in the graphs
  }
  auto* base = pin_in_.as<unsigned char>();
  auto* tokens = reinterpret_cast<int32_t*>(base);
  auto* rows = reinterpret_cast<lk::kv_row*>(base + b_->off_rows);
  auto* last = reinterpret_cast<int32_t*>(base + b_->off_last);
  auto* tables = reinterpret_cast<int32_t*>(base + b_->off_tables);
  const auto* dev_tables = reinterpret_cast<const int32_t*>(b_->in.as<unsigned char>()
                                                            + b_->off_tables);
  size_t row = 0, table = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& r = rows_[i];
    std::copy(r.req->blocks.begin(), r.req->blocks.end(), tables + table);
    for (int64_t k = 0; k < r.count; ++k) {
      tokens[row] = r.tokens[k];
      rows[row] = lk::kv_row{dev_tables + table, static_cast<int>(r.pos0 + k)};
      ++row;
    }
    last[i] = static_cast<int32_t>(row - 1);
    table += r.req->blocks.size();
  }
  // A decode bucket's pad rows: token 0 at position 0 of the pad block (never handed to a
  // request), each its own output row; their results are dropped.
  if (padded > t) {
    tables[table] = num_blocks_;
    for (; row < padded; ++row) {
      tokens[row] = 0;
      rows[row] = lk::kv_row{dev_tables + table, 0};
      last[row] = static_cast<int32_t>(row);
    }
    ++table;
  }
  auto s = stream_.get();
  if (auto err = CAFEX_CHECK(cudaMemcpyAsync(b_->in.data(), base, b_->off_tables + table * 4,
                                             cudaMemcpyHostToDevice, s)))
    return err;
  if (shard_.pp_rank > 0) {
    std::copy(input->hidden.begin(), input->hidden.end(), pin_hidden_.as<float>());
    return CAFEX_CHECK(cudaMemcpyAsync(b_->x.data(), pin_hidden_.as<void>(), t * h * 4,
                                       cudaMemcpyHostToDevice, s));
  }
  return caf::none;
}

caf::error cuda_llama_model::tp_sum(float* data, size_t count, const char* what, int l) {
  if (shard_.tp_size == 1)
    return caf::none;
  auto s = stream_.get();
  caf::error err;
  if (tp_dev_ != nullptr) {
    err = tp_dev_->enqueue_all_reduce_sum_f32(data, count, s);
  } else {
    // A host collective: stage through pinned memory, waiting with a deadline.
    float* host = pin_sum_.as<float>();
    err = CAFEX_CHECK(cudaMemcpyAsync(host, data, count * 4, cudaMemcpyDeviceToHost, s));
    if (!err)
      err = wait_stream(s, opts_.step_timeout, "copying TP partial sums to the host");
    if (!err)
      err = tp_->all_reduce_sum_f32(host, count);
    if (!err)
      err = CAFEX_CHECK(cudaMemcpyAsync(data, host, count * 4, cudaMemcpyHostToDevice, s));
  }
  if (err)
    return make_error(errc::transport_failed,
                      l < 0
                        ? fmt::format("TP all_reduce of the {} failed on tp rank {} of {}: "
                                      "{}",
                                      what, shard_.tp_rank, shard_.tp_size, describe(err))
                        : fmt::format("TP all_reduce of the {} output of layer {} failed on "
                                      "tp rank {} of {}, pp rank {}: {}",
                                      what, layers_.first + l, shard_.tp_rank, shard_.tp_size,
                                      shard_.pp_rank, describe(err)));
  return caf::none;
}

caf::error cuda_llama_model::matmul(int m, int n, int k, const uint16_t* a, const uint16_t* w,
                                    float* c) {
  if (lk::gemv_fits(m, k, a, w))
    return lk::gemv(m, n, k, a, w, c, stream_.get());
  return gemm_->run_bf16(m, n, k, a, w, c);
}

caf::error cuda_llama_model::layer(int l, int t) {
  const auto& w = w_[static_cast<size_t>(l)];
  const int h = static_cast<int>(hf_.hidden_size);
  const int d = static_cast<int>(hf_.head_dim), qh = s_.q_heads;
  const int qn = qh * d, width = qn + 2 * s_.kv_heads * d, n = static_cast<int>(s_.inter);
  const auto eps = static_cast<float>(hf_.rms_norm_eps);
  auto s = stream_.get();
  auto* x = b_->x.as<float>();
  auto* xn = b_->xn.as<uint16_t>();
  auto* part = b_->part.as<float>();
  const auto* rows = reinterpret_cast<const lk::kv_row*>(b_->in.as<unsigned char>()
                                                         + b_->off_rows);
  const lk::kv_shape kv{k_pool_.as<uint16_t>(), v_pool_.as<uint16_t>(), layers_.count,
                        s_.kv_heads, d};
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  caf::error err = matmul(t, width, h, xn, w.wqkv.as<uint16_t>(), b_->qkv.as<float>());
  if (!err)
    err = lk::qkv_rope_append(b_->qkv.as<float>(), w.bqkv.as<float>(), inv_freq_.as<float>(),
                              rows, t, qh, kv, l, s);
  if (!err)
    err = lk::attention(b_->qkv.as<float>(), rows, t, qh, kv, l, scale,
                        static_cast<int>(hf_.sliding_window), b_->attn.as<uint16_t>(), s);
  if (!err)
    err = matmul(t, h, qn, b_->attn.as<uint16_t>(), w.wo.as<uint16_t>(), part);
  if (!err && w.bo.data() != nullptr)
    err = lk::add_bias(part, w.bo.as<float>(), t, h, s);
  if (!err)
    err = tp_sum(part, static_cast<size_t>(t) * h, "attention", l);
  if (!err)
    err = lk::add_rmsnorm(x, part, w.mlp_norm.as<float>(), xn, t, h, eps, nullptr, s);
  if (!err && lk::gemv_fits(t, h, xn, w.wgu.data())) {
    err = lk::gemv_gate_up(t, n, h, xn, w.wgu.as<uint16_t>(), b_->act.as<uint16_t>(), s);
  } else if (!err) {
    err = matmul(t, 2 * n, h, xn, w.wgu.as<uint16_t>(), b_->gu.as<float>());
    if (!err)
      err = lk::silu_mul(b_->gu.as<float>(), t, n, b_->act.as<uint16_t>(), s);
  }
  if (!err)
    err = matmul(t, h, n, b_->act.as<uint16_t>(), w.wdown.as<uint16_t>(), part);
  if (!err)
    err = tp_sum(part, static_cast<size_t>(t) * h, "MLP", l);
  // The residual add, fused with the next layer's input norm (none after the last).
  const auto following = static_cast<size_t>(l) + 1;
  const float* next = following < w_.size() ? w_[following].attn_norm.as<float>() : nullptr;
  if (!err)
    err = lk::add_rmsnorm(x, part, next, xn, t, h, eps, nullptr, s);
  return err;
}

caf::error cuda_llama_model::head(int n) {
  const int h = static_cast<int>(hf_.hidden_size);
  const int64_t vs = s_.vocab, vocab = hf_.vocab_size;
  auto s = stream_.get();
  const auto* last = reinterpret_cast<const int*>(b_->in.as<unsigned char>() + b_->off_last);
  caf::error err = lk::add_rmsnorm(b_->x.as<float>(), nullptr, final_norm_.as<float>(),
                                   b_->xlast.as<uint16_t>(), n, h,
                                   static_cast<float>(hf_.rms_norm_eps), last, s);
  if (!err)
    err = matmul(n, static_cast<int>(vs), h, b_->xlast.as<uint16_t>(), lm_head_.as<uint16_t>(),
                 b_->logits.as<float>());
  float* full = b_->logits.as<float>();
  head_logits_ = full;
  if (!err && shard_.tp_size > 1) {
    const size_t bytes = static_cast<size_t>(n) * vs * 4;
    if (tp_dev_ != nullptr) {
      err = tp_dev_->enqueue_all_gather(b_->logits.data(), b_->gathered.data(), bytes, s);
    } else {
      auto* mine = pin_sum_.as<unsigned char>();
      auto* all = mine + bytes;
      err = CAFEX_CHECK(
        cudaMemcpyAsync(mine, b_->logits.data(), bytes, cudaMemcpyDeviceToHost, s));
      if (!err)
        err = wait_stream(s, opts_.step_timeout, "copying the logits to the host");
      if (!err)
        err = tp_->all_gather(mine, all, bytes);
      if (!err)
        err = CAFEX_CHECK(cudaMemcpyAsync(b_->gathered.data(), all, bytes * shard_.tp_size,
                                          cudaMemcpyHostToDevice, s));
    }
    if (err)
      return make_error(
        errc::transport_failed,
        fmt::format("TP all_gather of the logits failed on tp rank {} of {}: {}",
                    shard_.tp_rank, shard_.tp_size, describe(err)));
    err = lk::unshard_logits(b_->gathered.as<float>(), shard_.tp_size, n, vs, vocab,
                             b_->full.as<float>(), s);
    full = b_->full.as<float>();
    head_logits_ = full;
  }
  if (!err)
    err = cuda_kernels::argmax(full, n, static_cast<int>(vocab), b_->sampled.as<int32_t>(), s);
  return err;
}

caf::error cuda_llama_model::fetch_outputs(size_t requests) {
  auto s = stream_.get();
  const int64_t vocab = hf_.vocab_size;
  const float* full = head_logits_;
  caf::error err = CAFEX_CHECK(cudaMemcpyAsync(pin_sampled_.as<void>(), b_->sampled.data(),
                                               requests * 4, cudaMemcpyDeviceToHost, s));
  // Requests the argmax does not serve: their logits rows go to the host sampler.
  host_rows_.clear();
  for (size_t i = 0; i < requests; ++i) {
    const auto& r = rows_[i];
    const auto& p = r.req->sampling;
    const int64_t generated = r.pos0 + r.count - r.req->prompt_len;
    if (p.temperature >= 1e-5f || p.logprobs >= 0 || generated < p.min_tokens)
      host_rows_.push_back(static_cast<int32_t>(i));
  }
  if (!err && !host_rows_.empty())
    err = pin_logits_.reserve(host_rows_.size() * static_cast<size_t>(vocab) * 4);
  for (size_t j = 0; j < host_rows_.size() && !err; ++j)
    err = CAFEX_CHECK(cudaMemcpyAsync(pin_logits_.as<float>() + j * vocab,
                                      full + static_cast<size_t>(host_rows_[j]) * vocab,
                                      static_cast<size_t>(vocab) * 4, cudaMemcpyDeviceToHost,
                                      s));
  if (!err && cfg_.return_hidden)
    err = CAFEX_CHECK(cudaMemcpyAsync(pin_hidden_.as<void>(), b_->xlast.data(),
                                      requests * static_cast<size_t>(hf_.hidden_size) * 2,
                                      cudaMemcpyDeviceToHost, s));
  return err;
}

caf::error cuda_llama_model::forward(int t, int n) {
  const int h = static_cast<int>(hf_.hidden_size);
  auto s = stream_.get();
  caf::error err;
  if (shard_.pp_rank == 0) {
    err = lk::embed(b_->in.as<int32_t>(), embed_.as<uint16_t>(), s_.vocab0, s_.vocab, t, h,
                    b_->x.as<float>(), s);
    if (!err)
      err = tp_sum(b_->x.as<float>(), static_cast<size_t>(t) * h, "embedding", -1);
  }
  if (!err && !w_.empty())
    err = lk::add_rmsnorm(b_->x.as<float>(), nullptr, w_[0].attn_norm.as<float>(),
                          b_->xn.as<uint16_t>(), t, h, static_cast<float>(hf_.rms_norm_eps),
                          nullptr, s);
  for (int l = 0; l < layers_.count && !err; ++l)
    err = layer(l, t);
  if (!err && shard_.pp_rank == shard_.pp_size - 1)
    err = head(n);
  return err;
}

int cuda_llama_model::graph_bucket() const {
  if (cfg_.enforce_eager || !graphs_ok_ || (shard_.tp_size > 1 && tp_dev_ == nullptr))
    return 0; // a host collective cannot run inside a graph
  for (const auto& r : rows_)
    if (r.count != 1)
      return 0; // prefill: eager
  for (int b : graph_buckets)
    if (tokens_ <= b)
      return b;
  return 0;
}

caf::error cuda_llama_model::run_graph(int bucket) {
  auto s = stream_.get();
  auto it = graphs_.find(bucket);
  if (it != graphs_.end()) {
    if (tp_dev_ != nullptr)
      tp_dev_->replaying_enqueued_work();
    return CAFEX_CHECK(cudaGraphLaunch(it->second, s));
  }
  // First decode step of this size: run it, then capture the same work for the next ones
  // (capture records without executing). A capture that fails leaves this shard eager.
  if (auto err = forward(bucket, bucket))
    return err;
  cudaGraph_t graph = nullptr;
  auto err = CAFEX_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  if (!err) {
    auto inner = forward(bucket, bucket);
    auto ended = CAFEX_CHECK(cudaStreamEndCapture(s, &graph));
    err = inner ? inner : ended;
  }
  cudaGraphExec_t exec = nullptr;
  if (!err)
    err = CAFEX_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  if (graph != nullptr)
    cudaGraphDestroy(graph);
  if (err) {
    (void) cudaGetLastError(); // the capture's error is not the step's
    graphs_ok_ = false;
    graph_note_ = "CUDA graphs off after a failed capture at batch " + std::to_string(bucket)
                  + ": " + describe(err);
    return caf::none;
  }
  graphs_[bucket] = exec;
  return caf::none;
}

caf::error cuda_llama_model::make_graph_buffers() {
  const int biggest = graph_buckets[sizeof(graph_buckets) / sizeof(graph_buckets[0]) - 1];
  const auto t = static_cast<size_t>(biggest);
  const auto tables = t * static_cast<size_t>(blocks_for(max_len_) + 1) + 1;
  if (auto err = reserve(graphed_, t, t, tables))
    return err;
  // Pad rows may read rows no step wrote: zeros, never garbage.
  for (auto* buf : {&graphed_.x, &graphed_.xn, &graphed_.part})
    if (auto err = CAFEX_CHECK(cudaMemset(buf->data(), 0, buf->bytes())))
      return err;
  return caf::none;
}

void cuda_llama_model::drop_graphs() {
  for (auto& [bucket, exec] : graphs_)
    cudaGraphExecDestroy(exec);
  graphs_.clear();
}

caf::error cuda_llama_model::finish_step() {
  auto s = stream_.get();
  return tp_dev_ != nullptr ? tp_dev_->wait(s)
                            : wait_stream(s, opts_.step_timeout, "the step's GPU work");
}

void cuda_llama_model::sample_on_host(model_runner_output& out) {
  const size_t n = rows_.size();
  const int32_t* tok = pin_sampled_.as<int32_t>();
  out.sampled.assign(tok, tok + n);
  bool any_logprobs = false;
  for (const auto& r : rows_)
    any_logprobs = any_logprobs || r.req->sampling.logprobs >= 0;
  if (any_logprobs)
    out.logprobs.resize(n);
  const int64_t vocab = hf_.vocab_size;
  for (size_t j = 0; j < host_rows_.size(); ++j) {
    const auto i = static_cast<size_t>(host_rows_[j]);
    const auto& r = rows_[i];
    const int64_t position = r.pos0 + r.count; // every token before the sampled one
    out.sampled[i] = sample_token(pin_logits_.as<float>() + j * vocab, vocab, r.req->sampling,
                                  r.req->seed, position, sampler_,
                                  any_logprobs ? &out.logprobs[i] : nullptr,
                                  position - r.req->prompt_len, &hf_.eos_token_ids);
  }
  if (cfg_.return_hidden) {
    const auto* bits = pin_hidden_.as<uint16_t>();
    out.hidden.resize(n * static_cast<size_t>(hf_.hidden_size));
    std::transform(bits, bits + out.hidden.size(), out.hidden.begin(), bf16_value);
  }
}

void cuda_llama_model::rollback() {
  // Drain the stream before giving blocks back; if that fails the shard is unusable
  // (the caller reloads it).
  if (finish_step())
    broken_ = true;
  for (const auto& r : rows_) {
    auto keep = static_cast<size_t>(blocks_for(r.pos0));
    while (r.req->blocks.size() > keep) {
      free_blocks_.push_back(r.req->blocks.back());
      r.req->blocks.pop_back();
    }
  }
  for (const auto& id : inserted_)
    reqs_.erase(id);
  inserted_.clear();
  rows_.clear();
}

caf::error cuda_llama_model::fail(const scheduler_output& step, const caf::error& err) {
  rollback();
  return with_context(fmt::format("{}, step {}{}", who(), step.step_id,
                                  broken_ ? " (shard broken: reload it)" : ""),
                      err);
}

caf::expected<stage_result> cuda_llama_model::execute(const scheduler_output& step,
                                                      const intermediate_tensors* input) {
  if (!loaded_)
    return make_error(errc::not_ready, "hf model: execute() before a successful load()");
  if (broken_)
    return make_error(errc::model_failed, who()
                                            + ": an earlier step left the GPU stream stuck: "
                                              "reload the shard");
  rows_.clear();
  inserted_.clear();
  try {
    if (auto err = CAFEX_CHECK(cudaSetDevice(device_)))
      return fail(step, err);
    for (const auto& id : step.finished) {
      auto i = reqs_.find(id);
      if (i == reqs_.end())
        continue; // unknown ids are ignored
      free_blocks_.insert(free_blocks_.end(), i->second->blocks.begin(),
                          i->second->blocks.end());
      reqs_.erase(i);
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
      if (auto err = hf::check_stage_input(input, tokens_, h, shard_.pp_rank))
        return fail(step, err);
    if (tokens_ > 0) {
      auto s = stream_.get();
      const int bucket = graph_bucket();
      caf::error err = stage_inputs(input, static_cast<size_t>(bucket));
      if (!err)
        err = bucket > 0 ? run_graph(bucket)
                         : forward(static_cast<int>(tokens_), static_cast<int>(rows_.size()));
      if (!err && last)
        err = fetch_outputs(rows_.size());
      if (!err && !last)
        err = CAFEX_CHECK(cudaMemcpyAsync(pin_hidden_.as<void>(), b_->x.data(),
                                          static_cast<size_t>(tokens_) * h * 4,
                                          cudaMemcpyDeviceToHost, s));
      if (!err)
        err = finish_step();
      if (err)
        return fail(step, err);
      if (last) {
        sample_on_host(res.output);
      } else {
        res.to_next.num_tokens = tokens_;
        const float* hid = pin_hidden_.as<float>();
        res.to_next.hidden.assign(hid, hid + static_cast<size_t>(tokens_) * h);
      }
    }
    if (last)
      hf::scatter_outputs(admission_, res.output);
    for (const auto& r : rows_) // commit
      r.req->len = r.pos0 + r.count;
    rows_.clear();
    inserted_.clear();
    return res;
  } catch (const std::exception& e) {
    return fail(step, make_error(errc::model_failed, e.what()));
  }
}

} // namespace cafex
