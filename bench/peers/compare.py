#!/usr/bin/env python3
"""Side by side: cafex against Ray (compiled graph and plain actor calls, issue 8) and
vLLM's MessageQueue as MultiprocExecutor drives it (issue 19).

  bench/peers/.venv/bin/python bench/peers/compare.py RAY.json CAFEX.json [--mq MQ.json] \
      [--plots docs/bench] [--prefix ray_vs_cafex_] > table.md

RAY.json is ray_peer.py's report (its "modes" -> "compiled" / "plain" blocks), or any file
with the flat schema below; CAFEX.json has the flat schema (README.md):
  {"shapes": [{"tp", "pp", "p50_us", "p99_us", "paced_p50_us", "paced_p99_us",
               "pipelined_steps_per_s"}], "startup_s", "rss_mb", "kill_detect_s"}
A readable table with ratios and each goal's pass/fail goes to stderr; the markdown for
BENCHMARKS.md goes to stdout; one PNG per measure goes into --plots.
Exit status: 0 when every goal with data passes, 1 when one fails, 2 on bad input.
"""
import argparse
import json
import os
import sys

LAT_KEYS = [("p50_us", "p50 (us)"), ("p99_us", "p99 (us)"),
            ("paced_p50_us", "paced p50 (us)"), ("paced_p99_us", "paced p99 (us)")]
THR_KEY = ("pipelined_steps_per_s", "pipelined steps/s")
CPU_KEY = ("cpu_ms_per_1000_steps", "CPU ms / 1000 steps")
SCALARS = [("startup_s", "start-up to first step (s)"), ("rss_mb", "memory, summed RSS (MB)"),
           ("kill_detect_s", "worker killed -> call fails (s)")]


def load(path):
    with open(path) as f:
        return json.load(f)


def ray_blocks(ray):
    """Returns {"compiled": flat, "plain": flat or None} from ray_peer.py's report."""
    if "modes" in ray:
        return ray["modes"].get("compiled"), ray["modes"].get("plain")
    return ray, None


def by_shape(block):
    return {(r["tp"], r["pp"]): r for r in (block or {}).get("shapes", [])}


def num(x, fmt="{:.1f}"):
    return "n/a" if x is None else fmt.format(x)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def peer_goals(cafex, peer, peer_name, latency=True):
    """Issue 19 against one peer: p50 and paced p50 at most half of the peer's at every
    shape (unless `latency` is false: goals() has them for Ray's compiled graph), and
    fewer CPU-seconds per 1000 steps."""
    out = []
    cs, ps = by_shape(cafex), by_shape(peer)
    shapes = sorted(set(cs) & set(ps), key=lambda s: (s[1], s[0]))
    keys = [("p50_us", "p50", 0.5), ("paced_p50_us", "paced p50", 0.5)] if latency else []
    for key, label, limit in keys + [(CPU_KEY[0], "CPU", 1.0)]:
        for s in shapes:
            r = ratio(cs[s].get(key), ps[s].get(key))
            unit = "ms/1000 steps" if key == CPU_KEY[0] else "us"
            want = "at most half of" if limit == 0.5 else "less than"
            out.append((f"{label} {s[0]}x{s[1]} vs {peer_name}",
                        f"cafex {num(cs[s].get(key))} {unit} {want} {peer_name} "
                        f"{num(ps[s].get(key))} (ratio {num(r, '{:.2f}')})",
                        None if r is None else (r <= limit if limit < 1 else r < limit)))
    return out


def goals(cafex, ray_cg, ray_plain):
    """Each goal: (name, detail, ok or None)."""
    out = []
    cs, rs = by_shape(cafex), by_shape(ray_cg)
    shapes = sorted(set(cs) & set(rs), key=lambda s: (s[1], s[0]))
    for key, label, limit in (("p50_us", "p50", 0.5), ("paced_p50_us", "paced p50", 0.5),
                              ("p99_us", "p99", 1.0), ("paced_p99_us", "paced p99", 1.0)):
        for s in shapes:
            r = ratio(cs[s].get(key), rs[s].get(key))
            want = "at most half of" if limit == 0.5 else "no worse than"
            out.append((f"{label} {s[0]}x{s[1]}",
                        f"cafex {num(cs[s].get(key))} us {want} compiled graph "
                        f"{num(rs[s].get(key))} us (ratio {num(r, '{:.2f}')})",
                        None if r is None else r <= limit))
    for key, label, limit in (("startup_s", "start-up", 0.2), ("rss_mb", "memory", 0.2)):
        r = ratio(cafex.get(key), ray_cg.get(key))
        out.append((label, f"cafex {num(cafex.get(key), '{:.3g}')} at most a fifth of Ray's "
                    f"{num(ray_cg.get(key), '{:.3g}')} (ratio {num(r, '{:.3f}')})",
                    None if r is None else r <= limit))
    c, r = cafex.get("kill_detect_s"), ray_cg.get("kill_detect_s")
    out.append(("failure noticed", f"cafex {num(c, '{:.3f}')} s faster than Ray's compiled "
                f"graph {num(r, '{:.3f}')} s", None if c is None or r is None else c < r))
    return out


def tables(cafex, ray_cg, ray_plain, mq=None):
    cs, rs, ps, ms = by_shape(cafex), by_shape(ray_cg), by_shape(ray_plain), by_shape(mq)
    shapes = sorted(set(cs) | set(rs) | set(ps), key=lambda s: (s[1], s[0]))
    md = []
    md.append("| tp x pp | measure | cafex | Ray compiled graph | Ray actor calls "
              "| vLLM MessageQueue | cafex / compiled | cafex / actor calls | cafex / MessageQueue |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in shapes:
        for key, label in LAT_KEYS + [THR_KEY, CPU_KEY]:
            c = cs.get(s, {}).get(key)
            r = rs.get(s, {}).get(key)
            p = ps.get(s, {}).get(key)
            m = ms.get(s, {}).get(key)
            fmt = "{:.0f}" if key in (THR_KEY[0], CPU_KEY[0]) else "{:.1f}"
            md.append(f"| {s[0]} x {s[1]} | {label} | {num(c, fmt)} | {num(r, fmt)} | "
                      f"{num(p, fmt)} | {num(m, fmt)} | {num(ratio(c, r), '{:.2f}')} | "
                      f"{num(ratio(c, p), '{:.2f}')} | {num(ratio(c, m), '{:.2f}')} |")
    for key, label in SCALARS:
        c, r = cafex.get(key), ray_cg.get(key)
        p, m = (ray_plain or {}).get(key), (mq or {}).get(key)
        fmt = "{:.0f}" if key == "rss_mb" else "{:.3f}"
        md.append(f"| all | {label} | {num(c, fmt)} | {num(r, fmt)} | {num(p, fmt)} | "
                  f"{num(m, fmt)} | {num(ratio(c, r), '{:.3f}')} | "
                  f"{num(ratio(c, p), '{:.3f}')} | {num(ratio(c, m), '{:.3f}')} |")
    return md


def plots(folder, prefix, cafex, ray_cg, ray_plain, title_suffix, log=False, mq=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    systems = [("cafex", cafex, "#1f77b4"), ("Ray compiled graph", ray_cg, "#ff7f0e"),
               ("Ray actor calls", ray_plain, "#7f7f7f"), ("vLLM MessageQueue", mq, "#2ca02c")]
    systems = [s for s in systems if s[1]]
    shapes = sorted(set().union(*[set(by_shape(b)) for _, b, _ in systems]),
                    key=lambda s: (s[1], s[0]))
    written = []
    for key, label in LAT_KEYS + [THR_KEY, CPU_KEY]:
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.8 / len(systems)
        for j, (name, block, color) in enumerate(systems):
            rows = by_shape(block)
            xs = [i + (j - (len(systems) - 1) / 2) * width for i in range(len(shapes))]
            ys = [rows.get(s, {}).get(key) or 0 for s in shapes]
            bars = ax.bar(xs, ys, width, label=name, color=color)
            for b, y in zip(bars, ys):
                if y:
                    ax.annotate(f"{y:.0f}", (b.get_x() + b.get_width() / 2, y),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([f"tp={s[0]} pp={s[1]}" for s in shapes])
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        better = "higher is better" if key == THR_KEY[0] else "lower is better"
        ax.set_title(f"{label}, zero-layer step ({better}){title_suffix}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(folder, f"{prefix}{key}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    for key, label in SCALARS:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        names, vals, colors = [], [], []
        for name, block, color in systems:
            names.append(name)
            vals.append(block.get(key) or 0)
            colors.append(color)
        bars = ax.bar(names, vals, color=colors)
        for b, y in zip(bars, vals):
            ax.annotate(f"{y:.3g}" if y else "n/a", (b.get_x() + b.get_width() / 2, y),
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{label} (lower is better){title_suffix}", fontsize=10)
        fig.tight_layout()
        path = os.path.join(folder, f"{prefix}{key}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("ray_json")
    ap.add_argument("cafex_json")
    ap.add_argument("--mq", help="mq_peer.py's report (vLLM's MessageQueue peer)")
    ap.add_argument("--plots", help="folder for one PNG per measure (e.g. docs/bench)")
    ap.add_argument("--log", action="store_true", help="log-scale y axes in the plots")
    ap.add_argument("--prefix", default="ray_vs_cafex_", help="PNG file name prefix")
    args = ap.parse_args()
    try:
        ray, cafex = load(args.ray_json), load(args.cafex_json)
        mq = load(args.mq) if args.mq else None
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ray_cg, ray_plain = ray_blocks(ray)
    if not ray_cg or "shapes" not in cafex:
        print("error: missing 'shapes' (see bench/peers/README.md for the schema)",
              file=sys.stderr)
        return 2

    v = ray.get("versions", {})
    m = ray.get("machine", {})
    head = (f"Ray {v.get('ray', '?')} (Python {v.get('python', '?')}) measured "
            f"{ray.get('date', '?')} on {m.get('cores', '?')} cores ({m.get('cpu', '?')}), "
            f"load average at start {num((m.get('loadavg_start') or [None])[0], '{:.2f}')}; "
            f"cafex: {cafex.get('version', cafex.get('commit', '?'))}"
            f"{', ' + cafex['date'] if 'date' in cafex else ''}.")
    if mq is not None and "shapes" not in mq:
        print(f"error: {args.mq} has no 'shapes' (mq_peer.py writes them)", file=sys.stderr)
        return 2
    if mq is not None:
        mv = mq.get("versions", {})
        head_mq = (f" vLLM {mv.get('vllm', '?')} MessageQueue (torch {mv.get('torch', '?')},"
                   f" pyzmq {mv.get('pyzmq', '?')}) measured {mq.get('date', '?')}.")
    else:
        head_mq = " vLLM's MessageQueue: not run."
    head += head_mq
    md = tables(cafex, ray_cg, ray_plain, mq)
    gl = goals(cafex, ray_cg, ray_plain)
    gl += peer_goals(cafex, ray_cg, "Ray compiled graph", latency=False)
    if mq is not None:
        gl += peer_goals(cafex, mq, "vLLM MessageQueue")

    # Readable table on stderr.
    err = sys.stderr
    print(head, file=err)
    for line in md:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(line) <= set("|-: "):
            continue
        print(f"{cells[0]:8s} {cells[1]:22s} " + " ".join(f"{c:>10s}" for c in cells[2:]),
              file=err)
    print("\ngoals:", file=err)
    for name, detail, ok in gl:
        print(f"  {verdict(ok):4s}  {name:18s} {detail}", file=err)

    # Markdown on stdout.
    print(head)
    print()
    print("\n".join(md))
    print()
    print("| goal | detail | result |")
    print("|---|---|---|")
    for name, detail, ok in gl:
        print(f"| {name} | {detail} | {verdict(ok)} |")

    if args.plots:
        suffix = ""
        for path in plots(args.plots, args.prefix, cafex, ray_cg, ray_plain, suffix, args.log,
                          mq):
            print(f"plot: {path}", file=err)
    failed = any(ok is False for _, _, ok in gl)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
