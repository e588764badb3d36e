// The weights of the hf runner on CUDA (cuda_llama_model.hpp): a checkpoint's shard read
// by hf_weights and uploaded in bfloat16 (norms and biases in float32), or, with
// model_config::random_weights, every tensor drawn on the GPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/models/cuda/cuda_check.hpp"
#include "runtime/models/cuda/cuda_llama_model.hpp"

namespace cafex {

namespace lk = llama_kernels;

namespace {

uint16_t bf16_bits(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0;                 // NaN
  u += 0x7fffu + ((u >> 16) & 1u); // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

// At load time nothing runs on the device, so synchronous copies cannot hang.
caf::error upload_f32(device_buffer& dst, const hf::weight_buffer& src) {
  if (src.empty())
    return caf::none;
  if (auto err = dst.reserve(src.size() * sizeof(float)))
    return err;
  return CAFEX_CHECK(
    cudaMemcpy(dst.data(), src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice));
}

caf::error upload_bf16(device_buffer& dst, const hf::weight_buffer& src, size_t& total) {
  if (src.empty())
    return caf::none;
  std::vector<uint16_t> bits(src.size());
  std::transform(src.begin(), src.end(), bits.begin(), bf16_bits);
  if (auto err = dst.reserve(bits.size() * 2))
    return err;
  total += bits.size() * 2;
  return CAFEX_CHECK(
    cudaMemcpy(dst.data(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
}

} // namespace

caf::error cuda_llama_model::load_weights(const model_config& cfg) {
  auto w = hf::load_shard_weights(cfg.path, hf_, shard_, layers_);
  if (!w)
    return w.error();
  caf::error err = upload_bf16(embed_, w->embed, weight_bytes_);
  if (!err)
    err = upload_f32(final_norm_, w->final_norm);
  if (!err)
    err = upload_bf16(lm_head_, w->lm_head, weight_bytes_);
  w_.resize(w->layers.size());
  for (size_t l = 0; l < w->layers.size() && !err; ++l) {
    auto& src = w->layers[l];
    auto& dst = w_[l];
    for (auto [d, s] : {std::pair{&dst.attn_norm, &src.attn_norm},
                        {&dst.mlp_norm, &src.mlp_norm},
                        {&dst.bqkv, &src.bqkv},
                        {&dst.bo, &src.bo}})
      if (!err)
        err = upload_f32(*d, *s);
    for (auto [d, s] : {std::pair{&dst.wqkv, &src.wqkv},
                        {&dst.wo, &src.wo},
                        {&dst.wgu, &src.wgu},
                        {&dst.wdown, &src.wdown}})
      if (!err)
        err = upload_bf16(*d, *s, weight_bytes_);
    src = hf::hf_layer_weights{}; // the host copy goes as soon as the GPU has it
  }
  return err;
}

caf::error cuda_llama_model::random_weights(uint64_t seed) {
  const int64_t h = hf_.hidden_size, d = hf_.head_dim;
  const int64_t qn = s_.q_heads * d, width = qn + int64_t{2} * s_.kv_heads * d, n = s_.inter;
  auto s = stream_.get();
  uint64_t tensor = seed * 1000003u + static_cast<uint64_t>(shard_.tp_rank) * 7919u;
  auto rand = [&](device_buffer& buf, int64_t rows, int64_t cols, int64_t fan_in) {
    const auto count = static_cast<size_t>(rows * cols);
    if (auto err = buf.reserve(count * 2))
      return err;
    weight_bytes_ += count * 2;
    return lk::fill_random(buf.as<uint16_t>(), count, ++tensor,
                           1.0f / std::sqrt(static_cast<float>(fan_in)), s);
  };
  auto ones = [&](device_buffer& buf, int64_t count) {
    if (auto err = buf.reserve(static_cast<size_t>(count) * 4))
      return err;
    return lk::fill(buf.as<float>(), static_cast<size_t>(count), 1.0f, s);
  };
  auto zeros = [&](device_buffer& buf, int64_t count) {
    if (auto err = buf.reserve(static_cast<size_t>(count) * 4))
      return err;
    return lk::fill(buf.as<float>(), static_cast<size_t>(count), 0.0f, s);
  };
  const bool first = shard_.pp_rank == 0, last = shard_.pp_rank == shard_.pp_size - 1;
  caf::error err;
  if (first)
    err = rand(embed_, s_.vocab, h, 1);
  if (!err && last)
    err = ones(final_norm_, h);
  if (!err && last)
    err = rand(lm_head_, s_.vocab, h, h);
  w_.resize(static_cast<size_t>(layers_.count));
  for (auto& w : w_) {
    if (!err)
      err = ones(w.attn_norm, h);
    if (!err)
      err = ones(w.mlp_norm, h);
    if (!err && hf_.qkv_bias)
      err = zeros(w.bqkv, width);
    if (!err && hf_.o_bias && shard_.tp_rank == 0)
      err = zeros(w.bo, h);
    if (!err)
      err = rand(w.wqkv, width, h, h);
    if (!err)
      err = rand(w.wo, h, qn, hf_.num_heads * d);
    if (!err)
      err = rand(w.wgu, 2 * n, h, h);
    if (!err)
      err = rand(w.wdown, h, n, hf_.intermediate_size);
  }
  if (!err)
    err = wait_stream(s, opts_.step_timeout, "drawing the random weights");
  return err;
}

caf::error cuda_llama_model::upload_rope() {
  auto freqs = hf::rope_inv_freq(hf_.rope, hf_.head_dim);
  return upload_f32(inv_freq_, hf::weight_buffer(freqs.begin(), freqs.end()));
}

} // namespace cafex
