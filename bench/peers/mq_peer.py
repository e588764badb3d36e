#!/usr/bin/env python3
"""vLLM MessageQueue peer for cafex's side-by-side benchmark (issue 19).

Drives the (tp, pp) shapes the way vLLM's `MultiprocExecutor` (and `RayExecutorV2`, which
reuses it for control) does, with vLLM's own `MessageQueue`
(vllm.distributed.device_communicators.shm_broadcast, the shared-memory ring with the
SpinCondition readers):
  - one broadcast queue from the driver to every worker (world_size local readers); each
    step is `("execute_model", (scheduler_output,), {}, output_rank)` as collective_rpc
    enqueues it;
  - one response queue per worker (a single reader: the driver), of which the driver reads
    only the output rank's: TP rank 0 of the last PP stage (`_get_output_rank`);
  - between PP stages, worker i of stage k hands its output to worker i of stage k+1. vLLM
    does this inside the model with torch.distributed send/recv; here it is a one-reader
    MessageQueue, vLLM's fastest same-node path, so the peer is not slowed by a choice of
    ours.
Workers do no work (return their input), as cafex's zero-layer step does, and the step
carries the same ~4 KB scheduler-output-like payload as ray_peer.py. Workers are forked,
vLLM's default when CUDA is not initialised.

Measures per shape: back-to-back latency (p50, p99), the same paced at one step per
`--period-us`, pipelined steps/s (window = PP size, as vLLM's max_concurrent_batches), the
CPU-seconds of the driver and every worker per 1000 back-to-back steps; and at 2x2: start-up
to the first result, summed RSS, and the time from SIGKILL of a worker to the driver's call
failing (a monitor thread on the workers' sentinels cancels the wait, as in MultiprocExecutor).

  bench/peers/.venv/bin/python bench/peers/mq_peer.py --out bench/peers/results/mq.json

Output: the flat schema of compare.py (README.md) plus versions, machine and params.
"""
import argparse
import datetime
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time

SHAPES = [(1, 1), (2, 1), (1, 2), (2, 2)]
SUCCESS = 0


def pct(xs, p):
    """Nearest-rank percentile, as ray_peer.py and runtime/stats.hpp."""
    if not xs:
        return None
    s = sorted(xs)
    i = int(round(p / 100.0 * (len(s) - 1)))
    return s[min(max(i, 0), len(s) - 1)]


def payload(step_id, nbytes):
    return {"step_id": step_id, "cached_requests": [("r", step_id & 0x7FFF)],
            "pad": b"\x01" * nbytes}


def cpu_s(pid):
    """User + system CPU seconds of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid):
    """(RSS, PSS) of one process in MB, from /proc/PID/smaps_rollup: forked workers share
    the driver's pages (torch's among them), which RSS counts once per process."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(rest.split()[0]) / 1024
    return out.get("Rss", 0.0), out.get("Pss", 0.0)


# --------------------------------------------------------------------------- worker

def worker_main(rank, tp, pp, bcast_handle, conn):
    """One worker process: MultiprocExecutor's WorkerProc.worker_busy_loop, with the PP
    hand-off of a zero-layer model."""
    from vllm.distributed.device_communicators.shm_broadcast import MessageQueue
    stage, world = rank // tp, tp * pp
    output_rank = world - tp
    bcast = MessageQueue.create_from_handle(bcast_handle, rank)
    response = MessageQueue(1, 1)
    handoff_out = MessageQueue(1, 1) if stage < pp - 1 else None
    conn.send((response.export_handle(),
               handoff_out.export_handle() if handoff_out else None))
    in_handle = conn.recv()
    handoff_in = MessageQueue.create_from_handle(in_handle, 0) if in_handle else None
    bcast.wait_until_ready()
    response.wait_until_ready()
    if handoff_out:
        handoff_out.wait_until_ready()
    if handoff_in:
        handoff_in.wait_until_ready()
    conn.send("ready")
    while True:
        method, args, _kwargs, out_rank = bcast.dequeue(indefinite=True)
        if method == "shutdown":
            break
        x = args[0]
        if method == "execute_model":
            if handoff_in:
                x = handoff_in.dequeue(indefinite=True)
            if handoff_out:
                handoff_out.enqueue(x)
        elif method == "getpid":
            x = os.getpid()
        if out_rank is None or rank == out_rank:
            response.enqueue((SUCCESS, x))
    del output_rank
    os._exit(0)


# --------------------------------------------------------------------------- driver

class WorkerDied(RuntimeError):
    pass


class Executor:
    """The driver side: MultiprocExecutor's queues, output rank and worker monitor."""

    def __init__(self, tp, pp, timeout_s=60.0):
        from vllm.distributed.device_communicators.shm_broadcast import MessageQueue
        self.tp, self.pp, self.world = tp, pp, tp * pp
        self.output_rank = self.world - tp
        self.window = pp
        self.timeout_s = timeout_s
        self.bcast = MessageQueue(self.world, self.world)
        ctx = mp.get_context("fork")
        self.procs, conns = [], []
        for rank in range(self.world):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(rank, tp, pp, self.bcast.export_handle(),
                                                      child), daemon=True)
            p.start()
            self.procs.append(p)
            conns.append(parent)
        handles = [self.recv(c) for c in conns]
        # The workers' own rings, removed in close() whatever became of their creators.
        self.worker_segments = [q.buffer_handle[3] for h in handles for q in h
                                if q is not None and q.buffer_handle is not None]
        for rank, c in enumerate(conns):
            prev = rank - tp
            c.send(handles[prev][1] if prev >= 0 else None)
        self.responses = [MessageQueue.create_from_handle(h[0], 0) for h in handles]
        self.bcast.wait_until_ready()
        for r in self.responses:
            r.wait_until_ready()
        for c in conns:
            assert self.recv(c) == "ready"
        self.failed = None
        self.monitor = threading.Thread(target=self._monitor, daemon=True)
        self.monitor.start()

    def recv(self, conn):
        if not conn.poll(self.timeout_s):
            raise TimeoutError(f"a worker did not answer within {self.timeout_s} s")
        return conn.recv()

    def _monitor(self):
        """MultiprocExecutor.start_worker_monitor: on a worker's death, mark the executor
        failed and shut its response queues down, which cancels a waiting dequeue."""
        sentinels = {p.sentinel: p for p in self.procs}
        died = multiprocessing.connection.wait(list(sentinels))
        if getattr(self, "closing", False):
            return
        p = sentinels[died[0]]
        p.join(1)
        self.failed = f"worker pid {p.pid} died (exit code {p.exitcode})"
        for mq in self.responses:
            mq.shutdown()

    def submit(self, method, arg, reply_rank):
        self.bcast.enqueue((method, (arg,), {}, reply_rank), timeout=self.timeout_s)

    def result(self, rank):
        """collective_rpc's get_response: a blocking dequeue with the RPC deadline."""
        if self.failed:
            raise WorkerDied(self.failed)
        try:
            status, out = self.responses[rank].dequeue(timeout=self.timeout_s)
        except RuntimeError as e:  # "cancelled" by the monitor
            raise WorkerDied(self.failed or str(e)) from e
        assert status == SUCCESS
        return out

    def step(self, x):
        self.submit("execute_model", x, self.output_rank)
        return self.result(self.output_rank)

    def pids(self):
        return [p.pid for p in self.procs]

    def close(self):
        self.closing = True
        try:
            if not self.failed:
                self.bcast.enqueue(("shutdown", (None,), {}, None), timeout=5)
        except Exception:  # noqa: BLE001
            pass
        for p in self.procs:
            if self.failed:  # the others wait on a dead peer's hand-off
                p.kill()
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        from multiprocessing import shared_memory
        for name in self.worker_segments:
            try:
                seg = shared_memory.SharedMemory(name=name)
            except FileNotFoundError:
                continue
            seg.close()
            seg.unlink()  # also unregisters it from the resource tracker


# --------------------------------------------------------------------------- measures

def back_to_back(ex, steps, warmup, nbytes):
    out = []
    for i in range(warmup + steps):
        x = payload(i, nbytes)
        t = time.perf_counter()
        r = ex.step(x)
        dt = time.perf_counter() - t
        assert r["step_id"] == i
        if i >= warmup:
            out.append(dt * 1e6)
    return out


def paced(ex, steps, warmup, nbytes, period_us):
    out, period, nxt = [], period_us / 1e6, time.perf_counter()
    for i in range(warmup + steps):
        now = time.perf_counter()
        if now < nxt:
            time.sleep(nxt - now)
        x = payload(i, nbytes)
        t = time.perf_counter()
        r = ex.step(x)
        dt = time.perf_counter() - t
        assert r["step_id"] == i
        nxt = t + period
        if i >= warmup:
            out.append(dt * 1e6)
    return out


def pipelined(ex, steps, warmup, nbytes):
    def run(n, base):
        inflight, i = 0, 0
        expect = base
        t = time.perf_counter()
        while i < n or inflight:
            while i < n and inflight < ex.window:
                ex.submit("execute_model", payload(base + i, nbytes), ex.output_rank)
                i += 1
                inflight += 1
            r = ex.result(ex.output_rank)
            assert r["step_id"] == expect
            expect += 1
            inflight -= 1
        return n / (time.perf_counter() - t)

    run(warmup, 0)
    return run(steps, warmup)


def measure_shape(args, tp, pp):
    ex = Executor(tp, pp)
    try:
        ex.step(payload(-1, args.payload_bytes))
        pids = [os.getpid()] + ex.pids()
        cpu0 = sum(cpu_s(p) for p in pids)
        b2b = back_to_back(ex, args.steps, args.warmup, args.payload_bytes)
        cpu_ms = (sum(cpu_s(p) for p in pids) - cpu0) * 1e3 / (args.steps + args.warmup) * 1000
        pac = paced(ex, args.paced_steps, min(args.warmup, 50), args.payload_bytes,
                    args.period_us)
        sps = pipelined(ex, args.pipe_steps, args.warmup, args.payload_bytes)
    finally:
        ex.close()
    return {"tp": tp, "pp": pp, "p50_us": pct(b2b, 50), "p99_us": pct(b2b, 99),
            "paced_p50_us": pct(pac, 50), "paced_p99_us": pct(pac, 99),
            "pipelined_steps_per_s": sps, "cpu_ms_per_1000_steps": cpu_ms}


def lifecycle(args):
    """Start-up to the first result, summed RSS, SIGKILL of rank 1 -> the call fails."""
    t0 = time.perf_counter()
    ex = Executor(2, 2)
    ex.step(payload(0, args.payload_bytes))
    startup = time.perf_counter() - t0
    for i in range(300):
        ex.step(payload(i + 1, args.payload_bytes))
    mem = [memory_mb(p) for p in [os.getpid()] + ex.pids()]
    rss, pss = sum(m[0] for m in mem), sum(m[1] for m in mem)
    victim = ex.pids()[1]
    t_kill = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    detect, err = None, None
    try:
        for i in range(10**6):
            ex.step(payload(10**6 + i, args.payload_bytes))
            if time.perf_counter() - t_kill > 60:
                err = "no failure within 60 s"
                break
    except (WorkerDied, TimeoutError) as e:
        detect = time.perf_counter() - t_kill
        err = f"{type(e).__name__}: {e}"
    ex.close()
    return {"startup_s": startup, "rss_mb": rss, "pss_mb": pss, "kill_detect_s": detect, "kill_error": err}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--paced-steps", type=int, default=2000)
    ap.add_argument("--pipe-steps", type=int, default=2000)
    ap.add_argument("--period-us", type=float, default=1000.0)
    ap.add_argument("--payload-bytes", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=2, help="latency runs; the best is kept")
    ap.add_argument("--shapes", default="1x1,2x1,1x2,2x2")
    args = ap.parse_args()
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",") if s]
    # MessageQueue's ZeroMQ IPC sockets go to VLLM_RPC_BASE_PATH (default: /tmp) and stay
    # there; give them a folder of this run's own and remove it at the end.
    ipc_dir = tempfile.mkdtemp(prefix="cafex-mq-peer-")
    os.environ["VLLM_RPC_BASE_PATH"] = ipc_dir
    try:
        return run(args, shapes)
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)


def run(args, shapes):
    try:
        import torch
        import vllm
        import zmq
        from vllm.distributed.device_communicators.shm_broadcast import MessageQueue  # noqa
    except ImportError as e:
        print(f"error: {e}; run bench/peers/setup.sh first", file=sys.stderr)
        return 2
    report = {"tool": "bench/peers/mq_peer.py",
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "versions": {"vllm": vllm.__version__, "torch": torch.__version__,
                           "pyzmq": zmq.__version__, "python": platform.python_version()},
              "machine": {"cores": os.cpu_count(), "loadavg_start": list(os.getloadavg())},
              "payload_bytes": args.payload_bytes, "period_us": args.period_us,
              "params": vars(args), "runs": []}
    print(f"{'run':>3s} {'shape':6s} {'p50 us':>9s} {'p99 us':>9s} {'paced p50':>10s} "
          f"{'paced p99':>10s} {'pipelined/s':>12s} {'CPU ms/1k':>10s}", flush=True)
    for k in range(args.runs):
        rows = []
        for tp, pp in shapes:
            r = measure_shape(args, tp, pp)
            rows.append(r)
            print(f"{k + 1:3d} {tp}x{pp}    {r['p50_us']:9.1f} {r['p99_us']:9.1f} "
                  f"{r['paced_p50_us']:10.1f} {r['paced_p99_us']:10.1f} "
                  f"{r['pipelined_steps_per_s']:12.0f} {r['cpu_ms_per_1000_steps']:10.0f}",
                  flush=True)
        report["runs"].append(rows)
    # Per shape the best over runs, the strictest bar for cafex (as ray_peer.py).
    report["shapes"] = []
    for tp, pp in shapes:
        cand = [r for run in report["runs"] for r in run if (r["tp"], r["pp"]) == (tp, pp)]
        best = {"tp": tp, "pp": pp}
        for key in ("p50_us", "p99_us", "paced_p50_us", "paced_p99_us",
                    "cpu_ms_per_1000_steps"):
            best[key] = min(c[key] for c in cand)
        best["pipelined_steps_per_s"] = max(c["pipelined_steps_per_s"] for c in cand)
        report["shapes"].append(best)
    report.update(lifecycle(args))
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    print(f"start-up {report['startup_s']:.3f} s, RSS {report['rss_mb']:.0f} MB "
          f"(PSS {report['pss_mb']:.0f}), "
          f"kill -> fail {report['kill_detect_s']} s ({report['kill_error']})")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
