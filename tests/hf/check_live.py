#!/usr/bin/env python3
"""The live check of cafex's "hf" runner against transformers (`ctest -L hf`): fresh random
checkpoints of every variant make_fixtures.py knows (a new seed each run unless --seed),
transformers' greedy tokens and logprobs on them, and `cafex generate` on the same files at
(1,1), (2,1), (1,2), (2,2). Criterion, as vLLM's: at (1,1) the tokens are equal and the
logprobs of the first token agree within 1e-3; elsewhere, at the first position where the
tokens differ, each side's token is among the other's top 5 (check_logprobs_close).

Usage: tests/hf/.venv/bin/python tests/hf/check_live.py --cafex build/bin/cafex [--seed N]
Exit 0 when every check holds, 1 otherwise (each failure printed).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402

SHAPES = [(1, 1), (2, 1), (1, 2), (2, 2)]


def run_cafex(cafex, model, tp, pp, prompts, max_new):
    cmd = [cafex, "generate", "--model", model, "--tp", str(tp), "--pp", str(pp),
           "--max-tokens", str(max_new), "--ignore-eos", "--logprobs", "5", "--json",
           "--log-level", "warn"]
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(name, tp, pp, expected, got):
    failures = []
    for i, (want, out) in enumerate(zip(expected["outputs"], got["outputs"])):
        a, b = out["token_ids"], want["token_ids"]
        where = f"{name} tp={tp} pp={pp} prompt {i}"
        if len(a) != len(b):
            failures.append(f"{where}: {len(a)} tokens, transformers {len(b)}")
            continue
        if (tp, pp) == (1, 1):
            if a != b:
                failures.append(f"{where}: tokens {a}, transformers {b}")
            for (tid, tlp), (cid, clp) in zip(want["top"][0], out["logprobs"][0]["top"]):
                if tid != cid or abs(tlp - clp) > 1e-3:
                    failures.append(f"{where}: first-token top-5 logprobs differ: "
                                    f"({cid}, {clp:.5f}) vs transformers ({tid}, {tlp:.5f})")
                    break
            continue
        for k, (x, y) in enumerate(zip(a, b)):
            if x == y:
                continue
            ours = [e[0] for e in out["logprobs"][k]["top"]]
            theirs = [e[0] for e in want["top"][k]]
            if x not in theirs or y not in ours:
                failures.append(f"{where}: position {k}: cafex {x} (top {ours}), "
                                f"transformers {y} (top {theirs})")
            break
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cafex", required=True)
    ap.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = ap.parse_args()
    print(f"seed {args.seed}", flush=True)
    make_fixtures.torch.set_num_threads(1)
    failures = []
    with tempfile.TemporaryDirectory(prefix="cafex-hf-live-") as tmp:
        for i, name in enumerate(sorted(make_fixtures.VARIANTS)):
            make_fixtures.make(name, tmp, args.seed + i)
            model = os.path.join(tmp, name)
            with open(os.path.join(model, "expected.json")) as f:
                expected = json.load(f)
            for tp, pp in SHAPES:
                got = run_cafex(args.cafex, model, tp, pp, expected["prompts"],
                                expected["max_new_tokens"])
                failures += compare(name, tp, pp, expected, got)
            print(f"{name}: checked at {SHAPES}", flush=True)
    for f in failures:
        print("FAIL", f)
    print("ok" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
