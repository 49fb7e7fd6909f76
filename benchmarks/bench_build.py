"""Building long chains: ``t = t >> pl.nn.dense(8, 8)`` in a loop costs time linear in its length.

Each build composes the chain one layer at a time, then uses it once (its
parameter names and its flat list of boxes), so the figure includes the
flattening a lazy composite defers. Lengths are timed interleaved
(200, 2000, 200, 2000, ...) and the medians compared.

    python benchmarks/bench_build.py            # 200 vs 2000 layers
    python benchmarks/bench_build.py --check    # exit 1 unless time(2000)/time(200) <= 12 and time(2000) < 5 s
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import paralens as pl


def build(n: int) -> float:
    """Seconds to build an ``n``-layer chain by repeated ``>>`` and look inside it once (the garbage
    collector stays on, as for a user; each build starts after a collection, so none pays for another's)."""
    gc.collect()
    t0 = time.perf_counter()
    t = pl.nn.dense(8, 8)
    for _ in range(n - 1):
        t = t >> pl.nn.dense(8, 8)
    assert len(t.param_names) == 2 * n and t.n_boxes == 2 * n
    return time.perf_counter() - t0


def bench(short: int = 200, long: int = 2000, rounds: int = 5) -> dict:
    times: dict[int, list[float]] = {short: [], long: []}
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # nothing may recurse over the chain's length
    try:
        for _ in range(rounds):
            for n in (short, long):
                times[n].append(build(n))
    finally:
        sys.setrecursionlimit(old)
    t_short, t_long = statistics.median(times[short]), statistics.median(times[long])
    t0 = time.perf_counter()
    t = pl.nn.dense(8, 8)
    for _ in range(long - 1):
        t = t >> pl.nn.dense(8, 8)
    r = pl.R(t)
    t_R = time.perf_counter() - t0
    return {"short": short, "long": long, "seconds_short": t_short, "seconds_long": t_long,
            "ratio": t_long / t_short, "length_ratio": long / short, "seconds_long_with_R": t_R,
            "R_boxes": r.n_boxes}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless time(2000)/time(200) <= 12 and the 2000-layer build takes < 5 s")
    a = ap.parse_args(argv)
    r = bench(rounds=a.rounds)
    print(f"chain of {r['short']} layers: {r['seconds_short'] * 1e3:.1f} ms; of {r['long']}: "
          f"{r['seconds_long'] * 1e3:.1f} ms; ratio {r['ratio']:.2f} for {r['length_ratio']:.0f}x the length "
          f"(with R of the long one: {r['seconds_long_with_R']:.2f} s, {r['R_boxes']} boxes)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    if a.check and (r["ratio"] > 12 or r["seconds_long"] >= 5):
        raise SystemExit(f"building is not linear enough: ratio {r['ratio']:.2f}, {r['seconds_long']:.2f} s")
    return r


if __name__ == "__main__":
    main()
