#!/usr/bin/env python3
"""Writes tiny random Hugging Face checkpoints of every architecture and variant cafex's
"hf" runner supports, and what transformers generates from them: the fixtures that CI
checks cafex against without torch (tests/hf/fixtures/<name>/).

Each fixture directory holds config.json, generation_config.json, the weights
(model.safetensors, or shards with model.safetensors.index.json) and expected.json:
{"prompts": [[ids]], "outputs": [{"token_ids": [..], "top": [[[id, logprob] x 5] per
generated token]}], "max_new_tokens": N}. transformers runs in float32 with eager attention
and greedy decoding (its forward pass over the whole sequence each step), EOS ignored
(not masked), on the weights as saved
(BF16/F16 checkpoints are upcast to float32, as cafex does).

Usage: tests/hf/.venv/bin/python tests/hf/make_fixtures.py [--out DIR] [--only NAME]
(tests/hf/setup.sh makes the venv).
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config)

PROMPTS = [[1, 17, 42, 99, 7], [3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64], [200]]
MAX_NEW = 8


def base(**kw):
    d = dict(vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             rms_norm_eps=1e-5, initializer_range=0.25, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False)
    d.update(kw)
    return d


# name -> (config class, config kwargs, weight dtype, max shard size or None)
VARIANTS = {
    "llama_gqa": (LlamaConfig, base(), torch.float32, None),
    # Llama 3 rope scaling, tied embeddings, one KV head (replicated at tp=2), three layers
    # (pp=2 splits them 2 + 1 by vLLM's rule), weights in several files.
    "llama3_tied_sharded": (LlamaConfig,
                            base(num_hidden_layers=3, num_key_value_heads=1,
                                 tie_word_embeddings=True,
                                 rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                  "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 64}),
                            torch.float32, "60KB"),
    # A sliding window shorter than the longer prompt.
    "mistral_window": (MistralConfig, base(sliding_window=6), torch.float32, None),
    # q/k/v biases, bfloat16 weights.
    "qwen2_bias_bf16": (Qwen2Config, base(rope_parameters={"rope_type": "default",
                                                           "rope_theta": 1000000.0}),
                        torch.bfloat16, None),
    "llama_f16": (LlamaConfig, base(num_key_value_heads=4), torch.float16, None),
}


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else 1
                std = 1.0 if "embed" in name else 1.5 / fan_in ** 0.5
                p.copy_(std * torch.randn(p.shape, generator=g))


def make(name, out_root, seed):
    cls, kw, dtype, shard = VARIANTS[name]
    out = os.path.join(out_root, name)
    shutil.rmtree(out, ignore_errors=True)
    config = cls(**kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                             dtype=torch.float32)
    randomise(model, seed)
    model.to(dtype)
    save = {"safe_serialization": True}
    if shard:
        save["max_shard_size"] = shard
    model.save_pretrained(out, **save)
    model.generation_config.save_pretrained(out)
    # The reference: the saved files, loaded back in float32.
    ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32,
                                               attn_implementation="eager")
    ref.eval()
    outputs = []
    for prompt in PROMPTS:
        # Greedy decoding over transformers' forward pass (the whole sequence each step),
        # EOS ignored without masking it
        # (generate()'s min_new_tokens would forbid the EOS token, which cafex then
        # legitimately picks, and without it generate() stops there).
        seq = list(prompt)
        tokens, top = [], []
        for _ in range(MAX_NEW):
            with torch.no_grad():
                logits = ref(input_ids=torch.tensor([seq])).logits[0, -1]
            lp = torch.log_softmax(logits.float(), dim=-1)
            v, i = torch.topk(lp, 5)
            top.append([[int(a), float(b)] for a, b in zip(i.tolist(), v.tolist())])
            nxt = int(torch.argmax(lp))
            tokens.append(nxt)
            seq.append(nxt)
        outputs.append({"token_ids": tokens, "top": top})
    expected = {"prompts": PROMPTS, "outputs": outputs, "max_new_tokens": MAX_NEW,
                "dtype": str(dtype).replace("torch.", ""),
                "made_by": "transformers " + transformers.__version__ + ", torch "
                + torch.__version__}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out, x)) for x in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KiB, tokens {[o['token_ids'] for o in outputs]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "fixtures"))
    ap.add_argument("--only", choices=sorted(VARIANTS))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, name in enumerate(sorted(VARIANTS)):
        if args.only and name != args.only:
            continue
        make(name, args.out, args.seed + i)


if __name__ == "__main__":
    main()
