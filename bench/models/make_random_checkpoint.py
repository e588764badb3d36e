#!/usr/bin/env python3
"""Writes a random-weight Llama checkpoint in Hugging Face's format (config.json,
generation_config.json, model.safetensors in F32) with numpy alone, for benchmarks that
need a real checkpoint but no reference outputs (bench/serve_models.sh). The safetensors
file is written by hand: an 8-byte little-endian header length, the JSON header, the
tensors' bytes. Made at benchmark time, never committed.

Usage: make_random_checkpoint.py --out DIR [--hidden 512 --layers 8 --heads 8
       --kv-heads 2 --intermediate 1408 --vocab 32000 --max-len 2048 --seed 0]
"""
import argparse
import json
import os
import struct
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=1408)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--max-len", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    path = os.path.join(a.out, "model.safetensors")
    if os.path.exists(path):
        print(f"checkpoint: {a.out} exists, reused")
        return
    t = time.time()
    rng = np.random.default_rng(a.seed)
    head_dim = a.hidden // a.heads
    shapes = {"model.embed_tokens.weight": (a.vocab, a.hidden),
              "model.norm.weight": (a.hidden,),
              "lm_head.weight": (a.vocab, a.hidden)}
    for i in range(a.layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (a.hidden,),
            p + "post_attention_layernorm.weight": (a.hidden,),
            p + "self_attn.q_proj.weight": (a.heads * head_dim, a.hidden),
            p + "self_attn.k_proj.weight": (a.kv_heads * head_dim, a.hidden),
            p + "self_attn.v_proj.weight": (a.kv_heads * head_dim, a.hidden),
            p + "self_attn.o_proj.weight": (a.hidden, a.heads * head_dim),
            p + "mlp.gate_proj.weight": (a.intermediate, a.hidden),
            p + "mlp.up_proj.weight": (a.intermediate, a.hidden),
            p + "mlp.down_proj.weight": (a.hidden, a.intermediate),
        })
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)  # tensors start 8-byte aligned
    os.makedirs(a.out, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in shapes.items():
            if name.endswith("norm.weight"):
                w = np.ones(shape, dtype=np.float32)
            else:
                w = rng.normal(0.0, 0.02, size=shape).astype(np.float32)
            f.write(w.tobytes())
    os.replace(path + ".tmp", path)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": a.hidden, "intermediate_size": a.intermediate,
           "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "head_dim": head_dim,
           "vocab_size": a.vocab, "max_position_embeddings": a.max_len,
           "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
           "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": 2,
           "torch_dtype": "float32"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f)
    n = sum(int(np.prod(s)) for s in shapes.values())
    print(f"checkpoint: {n / 1e6:.1f} M parameters written to {a.out} in {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
