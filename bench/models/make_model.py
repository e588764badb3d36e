#!/usr/bin/env python3
"""Writes the benchmark model: a random-weight Llama of about 0.5 B parameters (hidden
1280, 20 layers, 20 heads, 4 KV heads, intermediate 5120, vocab 32000) as a Hugging Face
checkpoint in float32 (config.json, model.safetensors) and the same weights as an F32 GGUF
for llama.cpp (Q and K rows permuted to llama.cpp's rotary layout, as its
convert_hf_to_gguf.py does; a placeholder vocabulary, since the benchmark feeds token ids).
Made at benchmark time, never committed.

Usage: python make_model.py --out DIR   (DIR/hf, DIR/model-f32.gguf)
"""
import argparse
import os
import time

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

SHAPE = dict(vocab_size=32000, hidden_size=1280, intermediate_size=5120,
             num_hidden_layers=20, num_attention_heads=20, num_key_value_heads=4,
             max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
             eos_token_id=2, tie_word_embeddings=False,
             rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def permute(w, n_head):
    """HF's rotate_half layout -> llama.cpp's interleaved pairs (convert_hf_to_gguf)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(model, cfg, path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("cafex-bench-llama-0.5b")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(cfg.vocab_size)])
    w.add_token_scores([0.0] * cfg.vocab_size)
    types = [gguf.TokenType.NORMAL] * cfg.vocab_size
    types[0], types[1], types[2] = gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight",
                     permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight",
                     permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    hf_dir = os.path.join(args.out, "hf")
    gguf_path = os.path.join(args.out, "model-f32.gguf")
    if os.path.exists(os.path.join(hf_dir, "model.safetensors")) and os.path.exists(gguf_path):
        print(f"model: {args.out} exists, reused")
        return
    t = time.time()
    torch.manual_seed(args.seed)
    cfg = LlamaConfig(**SHAPE)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(hf_dir, safe_serialization=True, max_shard_size="100GB")
    write_gguf(model, cfg, gguf_path)
    print(f"model: {n / 1e9:.3f} B parameters written to {args.out} in {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
