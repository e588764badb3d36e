#!/usr/bin/env python3
"""Ray peer for cafex's side-by-side benchmark (issue 8).

Builds the shape of vLLM's `_compiled_ray_dag` for (tp, pp) in (1,1), (2,1), (1,2), (2,2):
the driver's input goes to every worker of stage 0, worker i of stage k feeds worker i of
stage k+1, and the last stage's workers return to the driver (MultiOutputNode). Each step
carries a scheduler-output-sized message (a dict with a ~4 KB byte field) and every actor
does no work (returns its input), as cafex's zero-layer overhead measurement does.

Two modes, with the same actors and payload:
  compiled  Ray Compiled Graph (`dag.experimental_compile()`, shared-memory channels, the
            default on one node), `_max_inflight_executions` = PP size;
  plain     plain actor calls: `.remote()` chains (ObjectRefs passed stage to stage) and
            `ray.get`.

Measures, per mode and shape: back-to-back per-step latency (p50, p99), the same paced at
one step per `--period-us`, pipelined steps per second (window = PP size, submit ahead, get
in order); and per mode, in a fresh process at `--lifecycle-shape` (default 2x2): start-up
time to the first result, the summed RSS of every process of the Ray session, and the time
from SIGKILL of one worker to the driver's call failing.

  bench/peers/.venv/bin/python bench/peers/ray_peer.py --out bench/peers/results/ray.json

See README.md for the output schema.
"""
import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

# vLLM raises the compiled graph's get-timeout to 300 s before importing ray.dag; the
# per-step measurements never come near it and the kill measurement uses its own timeout.
os.environ.setdefault("RAY_CGRAPH_get_timeout", "300")

SHAPES = [(1, 1), (2, 1), (1, 2), (2, 2)]


# --------------------------------------------------------------------------- helpers

def pct(xs, p):
    """Nearest-rank percentile of a list (same convention as runtime/stats.hpp: sorted
    index round(p/100 * (n-1)))."""
    if not xs:
        return None
    s = sorted(xs)
    i = int(round(p / 100.0 * (len(s) - 1)))
    return s[min(max(i, 0), len(s) - 1)]


def payload(step_id, nbytes):
    # A scheduler-output-like message: ids, one cached request, ~nbytes of opaque bytes.
    return {"step_id": step_id, "cached_requests": [("r", step_id & 0x7FFF)],
            "pad": b"\x01" * nbytes}


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    shm = None
    try:
        st = os.statvfs("/dev/shm")
        shm = round(st.f_blocks * st.f_frsize / 2**30, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem_gib, "dev_shm_gib": shm,
            "kernel": platform.release(), "loadavg_start": list(os.getloadavg())}


def versions():
    import ray
    import numpy
    import psutil
    return {"ray": ray.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "psutil": psutil.__version__}


def make_worker_class(ray):
    @ray.remote(num_cpus=0)
    class Worker:
        def step(self, x):
            return x

        def getpid(self):
            return os.getpid()

    return Worker


class Graph:
    """One (tp, pp) grid of actors, driven as a compiled graph or by plain calls."""

    def __init__(self, ray, tp, pp, mode, want_pids=False):
        self.ray, self.tp, self.pp, self.mode = ray, tp, pp, mode
        Worker = make_worker_class(ray)
        # pp_tp_workers[pp][tp], rank = pp * tp_size + tp (DESIGN.md, step 6).
        self.grid = [[Worker.remote() for _ in range(tp)] for _ in range(pp)]
        self.window = pp
        self.cdag = None
        # Worker pids (by rank) for the kill measurement; read before compiling, since a
        # compiled graph's actors run its exec loop afterwards. Costs one round trip that
        # compiling would spend anyway waiting for the actors to be up.
        self.pids = ray.get([w.getpid.remote() for w in self.workers()]) if want_pids else None
        if mode == "compiled":
            from ray.dag import InputNode, MultiOutputNode
            with InputNode() as inp:
                outs = [inp for _ in self.grid[0]]
                for stage in self.grid:
                    outs = [w.step.bind(outs[i]) for i, w in enumerate(stage)]
                dag = MultiOutputNode(outs)
            self.cdag = dag.experimental_compile(_max_inflight_executions=self.window)

    def workers(self):
        return [w for stage in self.grid for w in stage]

    def submit(self, x):
        if self.cdag is not None:
            return self.cdag.execute(x)
        outs = [x for _ in self.grid[0]]
        for stage in self.grid:
            outs = [w.step.remote(outs[i]) for i, w in enumerate(stage)]
        return outs

    def get(self, refs, timeout=None):
        return self.ray.get(refs, timeout=timeout)

    def step(self, x):
        return self.get(self.submit(x))

    def close(self):
        if self.cdag is not None:
            try:
                self.cdag.teardown()
            except Exception:  # noqa: BLE001
                pass
            self.cdag = None
        for w in self.workers():
            try:
                self.ray.kill(w)
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------- latency

def back_to_back(g, steps, warmup, nbytes):
    out = []
    for i in range(warmup + steps):
        x = payload(i, nbytes)
        t = time.perf_counter()
        r = g.step(x)
        dt = time.perf_counter() - t
        assert r[0]["step_id"] == i
        if i >= warmup:
            out.append(dt * 1e6)
    return out


def paced(g, steps, warmup, nbytes, period_us):
    """One step started every period_us (no catch-up burst when a step runs late)."""
    out = []
    period = period_us / 1e6
    nxt = time.perf_counter()
    t_begin = None
    for i in range(warmup + steps):
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        x = payload(i, nbytes)
        t = time.perf_counter()
        if i == warmup:
            t_begin = t
        r = g.step(x)
        dt = time.perf_counter() - t
        assert r[0]["step_id"] == i
        nxt = t + period
        if i >= warmup:
            out.append(dt * 1e6)
    actual_period_us = (time.perf_counter() - t_begin) / steps * 1e6
    return out, actual_period_us


def pipelined(g, steps, warmup, nbytes):
    """Steps per second with g.window steps in flight, results taken in order."""
    def run(n, base):
        inflight = []
        done = 0
        i = 0
        while i < min(g.window, n):
            inflight.append((i, g.submit(payload(base + i, nbytes))))
            i += 1
        while inflight:
            sid, refs = inflight.pop(0)
            r = g.get(refs)
            assert r[0]["step_id"] == base + sid
            done += 1
            if i < n:
                inflight.append((i, g.submit(payload(base + i, nbytes))))
                i += 1
        return done

    run(warmup, 0)
    t = time.perf_counter()
    done = run(steps, warmup)
    return done / (time.perf_counter() - t)


def session_cpu_s(procs):
    """User + system CPU seconds of `procs` (psutil.Process); a process gone meanwhile
    counts 0, so take the difference over the same list."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # noqa: BLE001
            pass
    return total


def latency_suite(args, run_index):
    import psutil
    import ray
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    res = {"run": run_index, "loadavg_before": list(os.getloadavg()), "modes": {}}
    try:
        for mode in args.modes:
            rows = []
            for tp, pp in args.shapes:
                g = Graph(ray, tp, pp, mode)
                try:
                    g.step(payload(-1, args.payload_bytes))  # first step, not timed
                    # Every process of the session (driver, workers, raylet, GCS...).
                    procs = session_processes(psutil)
                    cpu0 = session_cpu_s(procs)
                    b2b = back_to_back(g, args.steps, args.warmup, args.payload_bytes)
                    cpu_ms = (session_cpu_s(procs) - cpu0) * 1e6 / (args.steps + args.warmup)
                    pac, per = paced(g, args.paced_steps, min(args.warmup, 50),
                                     args.payload_bytes, args.period_us)
                    sps = pipelined(g, args.pipe_steps, args.warmup, args.payload_bytes)
                finally:
                    g.close()
                row = {"tp": tp, "pp": pp,
                       "p50_us": pct(b2b, 50), "p99_us": pct(b2b, 99),
                       "mean_us": sum(b2b) / len(b2b), "max_us": max(b2b),
                       "paced_p50_us": pct(pac, 50), "paced_p99_us": pct(pac, 99),
                       "paced_actual_period_us": per,
                       "pipelined_steps_per_s": sps, "pipeline_window": pp,
                       "cpu_ms_per_1000_steps": cpu_ms,
                       "steps": args.steps, "paced_steps": args.paced_steps,
                       "pipe_steps": args.pipe_steps}
                rows.append(row)
                print(f"  run {run_index} {mode:8s} {tp}x{pp}: p50 {row['p50_us']:8.1f} us"
                      f"  p99 {row['p99_us']:9.1f} us  paced p50 {row['paced_p50_us']:8.1f}"
                      f"  p99 {row['paced_p99_us']:9.1f}  pipelined {sps:8.0f} steps/s"
                      f"  CPU {cpu_ms:6.0f} ms/1000 steps",
                      flush=True)
            res["modes"][mode] = rows
    finally:
        ray.shutdown()
    res["loadavg_after"] = list(os.getloadavg())
    return res


# --------------------------------------------------------------------------- lifecycle

def session_processes(psutil):
    """Every live process of this Ray session: the driver, its descendants (gcs_server,
    raylet, workers, agents, log monitor...) and any process naming the session dir."""
    import ray
    me = psutil.Process()
    procs = {me.pid: me}
    for c in me.children(recursive=True):
        procs[c.pid] = c
    try:
        sess = ray._private.worker._global_node.get_session_dir_path()
    except Exception:  # noqa: BLE001
        sess = None
    if sess:
        for p in psutil.process_iter(["cmdline"]):
            try:
                if p.pid not in procs and any(sess in a for a in (p.info["cmdline"] or [])):
                    procs[p.pid] = p
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    return list(procs.values())


def classify(p, me_pid):
    if p.pid == me_pid:
        return "driver"
    try:
        name = p.name()
        cmd = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001
        return "gone"
    if name.startswith("ray::"):
        return name  # ray::Worker, ray::IDLE, ray::DashboardAgent, ray::RuntimeEnvAgent...
    for key, kind in (("gcs_server", "gcs_server"), ("raylet", "raylet"),
                      ("dashboard/dashboard.py", "dashboard_head"),
                      ("log_monitor.py", "log_monitor"),
                      ("autoscaler/_private/monitor.py", "autoscaler_monitor"),
                      ("default_worker.py", "ray::worker")):
        if key in cmd:
            return kind
    return "other:" + name


def memory_report(psutil):
    me = os.getpid()
    total_rss = total_pss = total_uss = 0
    per = []
    for p in session_processes(psutil):
        try:
            mi = p.memory_full_info()
            kind = classify(p, me)
            per.append({"pid": p.pid, "kind": kind, "rss_mb": mi.rss / 2**20,
                        "pss_mb": getattr(mi, "pss", 0) / 2**20,
                        "uss_mb": mi.uss / 2**20})
            total_rss += mi.rss
            total_pss += getattr(mi, "pss", 0)
            total_uss += mi.uss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    per.sort(key=lambda r: -r["rss_mb"])
    by_kind = {}
    for r in per:
        k = by_kind.setdefault(r["kind"], {"count": 0, "rss_mb": 0.0})
        k["count"] += 1
        k["rss_mb"] += r["rss_mb"]
    return {"rss_mb": total_rss / 2**20, "pss_mb": total_pss / 2**20,
            "uss_mb": total_uss / 2**20, "processes": len(per), "by_kind": by_kind,
            "per_process": per}


def lifecycle_child(args):
    """Runs in a fresh process: start-up to the first result, memory, kill detection."""
    t_import = time.perf_counter()
    import psutil
    import ray
    t_imported = time.perf_counter()
    tp, pp = args.lifecycle_shape
    out = {"mode": args.mode, "tp": tp, "pp": pp, "dashboard": args.dashboard,
           "import_s": t_imported - t_import}
    kw = {"log_to_driver": False, "logging_level": "ERROR"}
    if args.dashboard == "off":
        kw["include_dashboard"] = False
    t0 = time.perf_counter()
    ray.init(**kw)
    t_init = time.perf_counter()
    g = Graph(ray, tp, pp, args.mode, want_pids=True)
    t_built = time.perf_counter()
    r = g.step(payload(0, args.payload_bytes))
    t_first = time.perf_counter()
    assert r[0]["step_id"] == 0
    out.update({"startup_s": t_first - t0, "init_s": t_init - t0,
                "build_compile_s": t_built - t_init, "first_step_s": t_first - t_built,
                "startup_with_python_s": time.time() - args.spawn_wall})
    # Warm state for memory: a few hundred steps, then let late starters settle.
    for i in range(300):
        g.step(payload(i + 1, args.payload_bytes))
    time.sleep(args.settle_s)
    mem = memory_report(psutil)
    out["memory"] = mem
    out["rss_mb_by_kind"] = {k: round(v["rss_mb"], 1) for k, v in mem["by_kind"].items()}
    out["rss_mb"] = mem["rss_mb"]
    out["session_pids"] = [p["pid"] for p in mem["per_process"]]
    if args.dashboard == "off" and not args.no_kill:
        pids = g.pids
        rank = args.kill_rank % len(pids)
        victim = pids[rank]
        err = None
        detected = False
        phase = "submit"
        t_kill = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        try:
            refs = g.submit(payload(10**6, args.payload_bytes))
            phase = "get"
            g.get(refs, timeout=args.kill_timeout_s)
            err = "no error: the step completed"
        except Exception as e:  # noqa: BLE001
            err = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            detected = "timeout" not in type(e).__name__.lower() and \
                       "GetTimeoutError" not in type(e).__name__
        t_fail = time.perf_counter()
        out.update({"kill_rank": rank, "kill_pid": victim,
                    "kill_detect_s": (t_fail - t_kill) if detected else None,
                    "kill_elapsed_s": t_fail - t_kill, "kill_detected": detected,
                    "kill_error": err, "kill_failed_in": phase,
                    "kill_timeout_s": args.kill_timeout_s})
    # Shut down with a guard so a wedged teardown cannot hang the benchmark.
    done = threading.Event()

    def _shutdown():
        try:
            g.close()
            ray.shutdown()
        finally:
            done.set()

    threading.Thread(target=_shutdown, daemon=True).start()
    out["shutdown_clean"] = done.wait(30)
    print("LIFECYCLE_JSON " + json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)


def run_lifecycle(args, mode, dashboard):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "lifecycle", "--mode", mode,
           "--dashboard", dashboard, "--spawn-wall", repr(time.time()),
           "--lifecycle-shape", "%dx%d" % tuple(args.lifecycle_shape),
           "--payload-bytes", str(args.payload_bytes), "--kill-rank", str(args.kill_rank),
           "--kill-timeout-s", str(args.kill_timeout_s), "--settle-s", str(args.settle_s)]
    if args.no_kill:
        cmd.append("--no-kill")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.kill_timeout_s + 300)
    res = None
    for line in p.stdout.splitlines():
        if line.startswith("LIFECYCLE_JSON "):
            res = json.loads(line[len("LIFECYCLE_JSON "):])
    if res is None:
        return {"mode": mode, "dashboard": dashboard, "error": "child failed",
                "rc": p.returncode, "stderr_tail": p.stderr[-3000:]}
    # Make sure nothing of that session outlives it (only pids that session started).
    time.sleep(1.0)
    leftovers = []
    for pid in res.get("session_pids", []):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            if "ray" in cmdline or "gcs_server" in cmdline or "raylet" in cmdline:
                leftovers.append(pid)
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
    res["leftover_pids_killed"] = leftovers
    return res


# --------------------------------------------------------------------------- main

def summarize(runs, lifecycle, mode):
    """Per shape, the best over runs (lowest latency, highest throughput): the strictest
    bar for cafex. Every run is kept in the report under "runs"."""
    rows = []
    for tp, pp in SHAPES:
        cand = [r for run in runs for r in run["modes"].get(mode, [])
                if r["tp"] == tp and r["pp"] == pp]
        if not cand:
            continue
        row = {"tp": tp, "pp": pp}
        for k in ("p50_us", "p99_us", "paced_p50_us", "paced_p99_us",
                  "cpu_ms_per_1000_steps"):
            row[k] = min(c[k] for c in cand)
        row["pipelined_steps_per_s"] = max(c["pipelined_steps_per_s"] for c in cand)
        rows.append(row)
    lc = lifecycle.get(mode, {})
    return {"shapes": rows, "startup_s": lc.get("startup_s"), "rss_mb": lc.get("rss_mb"),
            "kill_detect_s": lc.get("kill_detect_s")}


def print_table(report):
    print()
    print(f"Ray {report['versions']['ray']}, Python {report['versions']['python']}, "
          f"{report['machine']['cores']} cores ({report['machine']['cpu']}), "
          f"load at start {report['machine']['loadavg_start'][0]:.2f}")
    hdr = (f"{'mode':9s} {'tp x pp':8s} {'p50 us':>9s} {'p99 us':>9s} {'paced p50':>10s}"
           f" {'paced p99':>10s} {'pipe st/s':>10s}")
    for run in report["runs"]:
        print(f"\nrun {run['run']} (load {run['loadavg_before'][0]:.2f} -> "
              f"{run['loadavg_after'][0]:.2f})")
        print(hdr)
        for mode, rows in run["modes"].items():
            for r in rows:
                print(f"{mode:9s} {r['tp']} x {r['pp']:<4d} {r['p50_us']:9.1f} {r['p99_us']:9.1f}"
                      f" {r['paced_p50_us']:10.1f} {r['paced_p99_us']:10.1f}"
                      f" {r['pipelined_steps_per_s']:10.0f}")
    print("\nstart-up, memory, failure (fresh process, shape "
          f"{report['lifecycle_shape'][0]}x{report['lifecycle_shape'][1]})")
    for key, lc in report["lifecycle"].items():
        if "error" in lc:
            print(f"  {key}: ERROR {lc['error']} rc={lc.get('rc')}")
            continue
        kd = lc.get("kill_detect_s")
        print(f"  {key:18s} start-up {lc['startup_s']:.2f} s (init {lc['init_s']:.2f}, "
              f"build/compile {lc['build_compile_s']:.2f}, first step {lc['first_step_s']:.3f};"
              f" with python+import {lc['startup_with_python_s']:.2f})  RSS {lc['rss_mb']:.0f} MB"
              f" (PSS {lc['memory']['pss_mb']:.0f}) in {lc['memory']['processes']} processes"
              + (f"  kill->fail {kd:.3f} s" if kd is not None else
                 (f"  kill: {lc.get('kill_error')}" if "kill_error" in lc else "")))
        print("      RSS by process kind (MB): " + ", ".join(
            f"{k} x{v['count']} {v['rss_mb']:.0f}" for k, v in lc["memory"]["by_kind"].items()))
        if lc.get("kill_error"):
            print(f"      kill rank {lc['kill_rank']} (pid {lc['kill_pid']}): failed in "
                  f"{lc['kill_failed_in']} after {lc['kill_elapsed_s']:.3f} s with {lc['kill_error'][:120]!r}")


def parse_shape(s):
    a, b = s.lower().split("x")
    return int(a), int(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--paced-steps", type=int, default=2000)
    ap.add_argument("--pipe-steps", type=int, default=2000)
    ap.add_argument("--period-us", type=float, default=1000.0)
    ap.add_argument("--payload-bytes", type=int, default=4096)
    ap.add_argument("--latency-runs", type=int, default=2)
    ap.add_argument("--shapes", default="1x1,2x1,1x2,2x2")
    ap.add_argument("--modes", default="compiled,plain")
    ap.add_argument("--lifecycle-shape", default="2x2")
    ap.add_argument("--kill-rank", type=int, default=1,
                    help="rank (pp * tp_size + tp) of the worker to SIGKILL")
    ap.add_argument("--kill-timeout-s", type=float, default=60.0)
    ap.add_argument("--settle-s", type=float, default=2.0)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--skip-lifecycle", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-dashboard-default", action="store_true",
                    help="skip the extra memory run with Ray's default include_dashboard")
    # internal
    ap.add_argument("--child", choices=["lifecycle"])
    ap.add_argument("--mode", default="compiled")
    ap.add_argument("--dashboard", default="off", choices=["off", "default"])
    ap.add_argument("--spawn-wall", type=float, default=0.0)
    args = ap.parse_args()
    args.shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    args.modes = [m for m in args.modes.split(",") if m]
    args.lifecycle_shape = parse_shape(args.lifecycle_shape)

    if args.child == "lifecycle":
        lifecycle_child(args)
        return

    report = {"tool": "bench/peers/ray_peer.py", "date": datetime.datetime.now().isoformat(
        timespec="seconds"), "machine": machine_info(), "versions": versions(),
        "payload_bytes": args.payload_bytes, "period_us": args.period_us,
        "lifecycle_shape": list(args.lifecycle_shape), "kill_rank": args.kill_rank,
        "params": {"steps": args.steps, "warmup": args.warmup, "paced_steps": args.paced_steps,
                   "pipe_steps": args.pipe_steps, "latency_runs": args.latency_runs},
        "lifecycle": {}, "runs": []}
    try:
        import ray
        import pickle
        report["payload_pickled_bytes"] = len(pickle.dumps(payload(0, args.payload_bytes)))
        del ray
    except Exception:  # noqa: BLE001
        pass

    if not args.skip_lifecycle:
        # Fresh processes first, while no other Ray session of ours is alive.
        for mode in args.modes:
            print(f"lifecycle: {mode} ...", flush=True)
            report["lifecycle"][mode] = run_lifecycle(args, mode, "off")
        if not args.skip_dashboard_default:
            print("lifecycle: compiled with Ray's default include_dashboard (memory only) ...",
                  flush=True)
            a2 = argparse.Namespace(**vars(args))
            a2.no_kill = True
            report["lifecycle"]["compiled_default_dashboard"] = run_lifecycle(a2, "compiled",
                                                                             "default")
    if not args.skip_latency:
        for k in range(args.latency_runs):
            print(f"latency run {k + 1}/{args.latency_runs} ...", flush=True)
            report["runs"].append(latency_suite(args, k + 1))
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    report["modes"] = {m: summarize(report["runs"], report["lifecycle"], m) for m in args.modes}
    print_table(report)
    text = json.dumps(report, indent=1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print(f"\nwrote {args.out}")
    print(json.dumps({"versions": report["versions"], "modes": report["modes"]}))


if __name__ == "__main__":
    main()
