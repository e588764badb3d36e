#!/usr/bin/env python3
"""The benchmark's peers on the same weights as bench_model: HF transformers (torch,
float32, eager attention) and llama.cpp (llama-cpp-python, the F32 GGUF). Measures what
bench_model does: load time, resident memory, prefill tokens/s (one prompt, best of 3) and
decode tokens/s at each batch size, with --threads threads. Prints one JSON object.

Usage: python peers.py --peer transformers|llamacpp --model DIR --threads N
       [--prompt-len 128] [--decode-steps 32] [--batches 1,8]
"""
import argparse
import json
import os
import time


def rss_mib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def tokens(n, salt, vocab):
    return [(i * 7919 + salt * 104729 + 11) % (vocab - 3) + 3 for i in range(n)]


def bench_transformers(args):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(args.threads)
    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(os.path.join(args.model, "hf"),
                                                 dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    load_s = time.time() - t
    rss = rss_mib()
    vocab = model.config.vocab_size
    best = 1e30
    with torch.no_grad():
        for i in range(3):
            ids = torch.tensor([tokens(args.prompt_len, i, vocab)])
            t = time.time()
            model(input_ids=ids, use_cache=True)
            best = min(best, time.time() - t)
        decode = {}
        for b in args.batches:
            ids = torch.tensor([tokens(16, 100 + i, vocab) for i in range(b)])
            out = model(input_ids=ids, use_cache=True)
            cache = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            t = time.time()
            for _ in range(args.decode_steps):
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            secs = time.time() - t
            decode[str(b)] = {"tokens_per_s": b * args.decode_steps / secs,
                              "step_ms": secs * 1000 / args.decode_steps}
    return {"peer": "transformers " + __import__("transformers").__version__ + " (torch "
            + torch.__version__ + ")", "load_s": load_s, "rss_mib": rss,
            "peak_rss_mib": rss_mib("VmHWM"), "prefill_tokens_per_s": args.prompt_len / best,
            "decode": decode}


def bench_llamacpp(args):
    import llama_cpp
    n_seq = max(args.batches)
    # Llama() has no argument for several sequences: its default context parameters get
    # them (one unified KV cache for n_seq sequences).
    defaults = llama_cpp.llama_cpp.llama_context_default_params

    def with_sequences():
        p = defaults()
        p.n_seq_max = n_seq
        p.kv_unified = True
        return p
    llama_cpp.llama_cpp.llama_context_default_params = with_sequences
    t = time.time()
    llm = llama_cpp.Llama(model_path=os.path.join(args.model, "model-f32.gguf"),
                          n_threads=args.threads, n_threads_batch=args.threads, n_ctx=2048,
                          n_batch=512, n_ubatch=512, verbose=False)
    load_s = time.time() - t
    rss = rss_mib()
    vocab = llm.n_vocab()
    ctx = llm.ctx
    best = 1e30
    for i in range(3):
        llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        t = time.time()
        llm.eval(tokens(args.prompt_len, i, vocab))
        best = min(best, time.time() - t)
    decode = {}
    for b in args.batches:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        batch = llama_cpp.llama_batch_init(max(16 * b, b), 0, b)
        try:
            def submit(entries):
                batch.n_tokens = len(entries)
                for k, (tok, pos, seq, logits) in enumerate(entries):
                    batch.token[k] = tok
                    batch.pos[k] = pos
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = seq
                    batch.logits[k] = logits
                rc = llama_cpp.llama_decode(ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode returned {rc}")
            entries = []
            for s in range(b):
                p = tokens(16, 100 + s, vocab)
                entries += [(tok, pos, s, pos == 15) for pos, tok in enumerate(p)]
            submit(entries)
            t = time.time()
            for step in range(args.decode_steps):
                submit([(5 + s, 16 + step, s, True) for s in range(b)])
            secs = time.time() - t
        finally:
            llama_cpp.llama_batch_free(batch)
        decode[str(b)] = {"tokens_per_s": b * args.decode_steps / secs,
                          "step_ms": secs * 1000 / args.decode_steps}
    return {"peer": "llama.cpp (llama-cpp-python " + llama_cpp.__version__ + ")",
            "load_s": load_s, "rss_mib": rss, "peak_rss_mib": rss_mib("VmHWM"),
            "prefill_tokens_per_s": args.prompt_len / best, "decode": decode}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=["transformers", "llamacpp"], required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()
    args.batches = [int(x) for x in args.batches.split(",")]
    run = bench_transformers if args.peer == "transformers" else bench_llamacpp
    out = run(args)
    out["threads"] = args.threads
    print(json.dumps(out))


if __name__ == "__main__":
    main()
