#!/usr/bin/env python3
"""How much CPU Ray's workers burn while a graph is built but idle, and per step.

Explains the compiled graph's latency on a machine with fewer cores than actors: each
actor's compiled-graph exec loop polls its input channel (measured here: about one core
per actor while idle), while plain actors sleep.

  bench/peers/.venv/bin/python bench/peers/ray_idle_cpu.py [--shape 2x2] [--idle-s 5]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ray_peer as rp  # noqa: E402


def thread_ticks(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            s = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[t] = (comm, int(f[11]) + int(f[12]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="2x2")
    ap.add_argument("--idle-s", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    tp, pp = rp.parse_shape(a.shape)
    import psutil
    import ray
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    hz = os.sysconf("SC_CLK_TCK")
    report = {"shape": [tp, pp], "cores": os.cpu_count(), "loadavg": list(os.getloadavg())}
    for mode in ("compiled", "plain"):
        g = rp.Graph(ray, tp, pp, mode, want_pids=True)
        g.step(rp.payload(0, 4096))
        procs = [psutil.Process(p) for p in g.pids]
        me = psutil.Process()

        def cpu():
            return [sum(p.cpu_times()[:2]) for p in procs] + [sum(me.cpu_times()[:2])]

        t0 = thread_ticks(g.pids[0])
        c0 = cpu()
        time.sleep(a.idle_s)
        c1 = cpu()
        t1 = thread_ticks(g.pids[0])
        busiest = sorted(((t1[t][1] - t0[t][1]) / hz / a.idle_s, t1[t][0])
                         for t in t1 if t in t0)[-1]
        t = time.perf_counter()
        for i in range(a.steps):
            g.step(rp.payload(i + 1, 4096))
        dt = time.perf_counter() - t
        c2 = cpu()
        g.close()
        report[mode] = {
            "idle_cpu_cores_per_worker": [round((y - x) / a.idle_s, 3) for x, y in zip(c0[:-1], c1[:-1])],
            "idle_cpu_cores_driver": round((c1[-1] - c0[-1]) / a.idle_s, 3),
            "busiest_thread_of_rank0": {"name": busiest[1], "cores": round(busiest[0], 3)},
            "steps": a.steps, "steps_s": round(dt, 3),
            "cpu_us_per_step_per_worker": [round((y - x) / a.steps * 1e6, 1) for x, y in zip(c1[:-1], c2[:-1])],
            "cpu_us_per_step_driver": round((c2[-1] - c1[-1]) / a.steps * 1e6, 1),
        }
        print(mode, json.dumps(report[mode]), flush=True)
    ray.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
