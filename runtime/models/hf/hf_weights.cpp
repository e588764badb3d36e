#include "runtime/models/hf/hf_weights.hpp"

#include <algorithm>

#include "runtime/models/hf/safetensors.hpp"

namespace cafex::hf {

tp_slices slices_of(const hf_config& cfg, int tp_rank, int tp_size) {
  tp_slices s;
  s.q_heads = cfg.num_heads / tp_size;
  s.q_head0 = tp_rank * s.q_heads;
  if (cfg.num_kv_heads >= tp_size) {
    s.kv_heads = cfg.num_kv_heads / tp_size;
    s.kv_head0 = tp_rank * s.kv_heads;
  } else { // replicated: tp / kv ranks share each KV head
    s.kv_heads = 1;
    s.kv_head0 = tp_rank / (tp_size / cfg.num_kv_heads);
  }
  s.inter = cfg.intermediate_size / tp_size;
  s.inter0 = tp_rank * s.inter;
  s.vocab = (cfg.vocab_size + tp_size - 1) / tp_size;
  s.vocab0 = tp_rank * s.vocab;
  return s;
}

namespace {

/// Reads rows [row0, row0 + rows) of `name` (shape checked) into `out`, zero rows past the
/// tensor's end (the vocab padding).
caf::error rows_of(checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape,
                   int64_t row0, int64_t rows, weight_buffer& out) {
  auto t = ck.tensor(name, shape);
  if (!t)
    return t.error();
  const int64_t cols = shape.size() >= 2 ? shape[1] : 1;
  const int64_t have = std::max<int64_t>(0, std::min(rows, shape[0] - row0));
  if (have > 0)
    checkpoint::read_block(**t, row0, have, 0, cols, out);
  checkpoint::release(**t);
  out.resize(out.size() + static_cast<size_t>((rows - have) * cols), 0.0f);
  return caf::none;
}

caf::error cols_of(checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape,
                   int64_t col0, int64_t cols, weight_buffer& out) {
  auto t = ck.tensor(name, shape);
  if (!t)
    return t.error();
  checkpoint::read_block(**t, 0, shape[0], col0, cols, out);
  checkpoint::release(**t);
  return caf::none;
}

caf::error load_layer(checkpoint& ck, const hf_config& cfg, const tp_slices& s, int tp_rank,
                      int layer, hf_layer_weights& w) {
  const auto p = "model.layers." + std::to_string(layer) + ".";
  const int64_t h = cfg.hidden_size, d = cfg.head_dim;
  const int64_t qrows = static_cast<int64_t>(cfg.num_heads) * d;
  const int64_t kvrows = static_cast<int64_t>(cfg.num_kv_heads) * d;
  caf::error err;
  auto step = [&](caf::error e) {
    if (!err && e)
      err = std::move(e);
  };
  step(rows_of(ck, p + "input_layernorm.weight", {h}, 0, h, w.attn_norm));
  step(rows_of(ck, p + "post_attention_layernorm.weight", {h}, 0, h, w.mlp_norm));
  const int64_t q0 = s.q_head0 * d, qn = s.q_heads * d;
  const int64_t k0 = s.kv_head0 * d, kn = s.kv_heads * d;
  step(rows_of(ck, p + "self_attn.q_proj.weight", {qrows, h}, q0, qn, w.wqkv));
  step(rows_of(ck, p + "self_attn.k_proj.weight", {kvrows, h}, k0, kn, w.wqkv));
  step(rows_of(ck, p + "self_attn.v_proj.weight", {kvrows, h}, k0, kn, w.wqkv));
  if (cfg.qkv_bias) {
    step(rows_of(ck, p + "self_attn.q_proj.bias", {qrows}, q0, qn, w.bqkv));
    step(rows_of(ck, p + "self_attn.k_proj.bias", {kvrows}, k0, kn, w.bqkv));
    step(rows_of(ck, p + "self_attn.v_proj.bias", {kvrows}, k0, kn, w.bqkv));
  }
  step(cols_of(ck, p + "self_attn.o_proj.weight", {h, qrows}, q0, qn, w.wo));
  if (cfg.o_bias && tp_rank == 0)
    step(rows_of(ck, p + "self_attn.o_proj.bias", {h}, 0, h, w.bo));
  const int64_t inter = cfg.intermediate_size;
  step(rows_of(ck, p + "mlp.gate_proj.weight", {inter, h}, s.inter0, s.inter, w.wgu));
  step(rows_of(ck, p + "mlp.up_proj.weight", {inter, h}, s.inter0, s.inter, w.wgu));
  step(cols_of(ck, p + "mlp.down_proj.weight", {h, inter}, s.inter0, s.inter, w.wdown));
  return err;
}

} // namespace

caf::expected<hf_shard_weights> load_shard_weights(const std::string& dir,
                                                   const hf_config& cfg,
                                                   const shard_info& shard, pp_layers layers) {
  auto ck = checkpoint::open(dir);
  if (!ck)
    return ck.error();
  const auto s = slices_of(cfg, shard.tp_rank, shard.tp_size);
  const int64_t v = cfg.vocab_size, h = cfg.hidden_size;
  hf_shard_weights w;
  const bool first = shard.pp_rank == 0;
  const bool last = shard.pp_rank == shard.pp_size - 1;
  if (first)
    if (auto err = rows_of(*ck, "model.embed_tokens.weight", {v, h}, s.vocab0, s.vocab,
                           w.embed))
      return err;
  w.layers.resize(static_cast<size_t>(layers.count));
  for (int l = 0; l < layers.count; ++l)
    if (auto err = load_layer(*ck, cfg, s, shard.tp_rank, layers.first + l,
                              w.layers[static_cast<size_t>(l)]))
      return err;
  if (last) {
    if (auto err = rows_of(*ck, "model.norm.weight", {h}, 0, h, w.final_norm))
      return err;
    // Tied embeddings: the LM head is the embedding matrix (a checkpoint may still carry
    // a copy named lm_head.weight; the embedding is what transformers uses).
    const char* head = cfg.tie_word_embeddings ? "model.embed_tokens.weight"
                                               : "lm_head.weight";
    if (auto err = rows_of(*ck, head, {v, h}, s.vocab0, s.vocab, w.lm_head))
      return err;
  }
  ck->release_pages();
  return w;
}

} // namespace cafex::hf
