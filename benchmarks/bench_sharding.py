"""paralens sharded vs hand-written JAX + optax with the same shardings, on 8 devices.

For each sharding (data parallel, FSDP, tensor parallel, FSDP x tensor, pipelines of 2 and 4
stages with as many microbatches) and each model (the MLP,
the char-LM transformer of examples/char_lm.py), the paralens step and a hand-written step
(``jax.value_and_grad``, ``optax.adam``, ``jax.jit`` with the same ``NamedSharding`` of every
parameter, optimizer-state leaf and batch; for a pipeline, the same GPipe schedule written with
``shard_map``, ``ppermute`` and ``jax.vjp`` of hand-written stages) are timed interleaved in one
process; the figure is
the median of the per-round ratios. Per-device bytes of parameters plus optimizer state (from
the arrays' ``addressable_shards``) and the compiled programs' temp memory are reported beside.

On a machine without 8 accelerators, the 8 devices are CPU devices
(``--xla_force_host_platform_device_count=8``, set here when ``XLA_FLAGS`` does not say).

    python benchmarks/bench_sharding.py            # both models, every sharding
    python benchmarks/bench_sharding.py --check    # exit 1 unless every step ratio <= 1.05
"""

from __future__ import annotations

import os

if "XLA_FLAGS" not in os.environ:  # before JAX starts: 8 devices, on CPU if nothing else
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import char_lm  # noqa: E402
import references as ref  # noqa: E402
from bench_mlp import timed  # noqa: E402  (interleaved timing, as every benchmark here)

import paralens as pl  # noqa: E402
from paralens.backends.sharding import Sharding  # noqa: E402
from paralens.pipeline import factors  # noqa: E402

TENSOR = {"mlp": "model", "heads": "model", "vocab": "model"}


def plans(devices) -> dict:
    line, grid = Mesh(devices, ("data",)), Mesh(devices.reshape(2, -1), ("data", "model"))
    return {"data": Sharding(line), "fsdp": Sharding(line, fsdp="data"), "tensor": Sharding(grid, TENSOR),
            "fsdp x tensor": Sharding(grid, TENSOR, fsdp="data"),
            "pipeline 2": Sharding(Mesh(devices.reshape(-1, 2), ("data", "stage")), pipeline="stage", microbatches=2),
            "pipeline 4": Sharding(Mesh(devices.reshape(-1, 4), ("data", "stage")), pipeline="stage", microbatches=4)}


# ---- the hand-written pipeline: the same GPipe schedule, each stage's forward written by hand and
# differentiated with jax.vjp, as a JAX user would write it with shard_map and ppermute

def _factor_forward(factor: pl.Term, names: dict, heads: int):
    """A hand-written forward pass of one ``>>`` factor; ``names`` maps its own parameter names
    (``attention.Wq``) to the model's (``attention1.Wq``)."""
    kind = factor.name.split("(")[0]

    def own(p):
        return {local: p[name] for local, name in names.items()}
    if kind in ("dense", "readout"):
        w, b = list(names)
        return lambda p, x: x @ p[names[w]] + p[names[b]]
    if kind in ("relu", "tanh"):
        act = jax.nn.relu if kind == "relu" else jnp.tanh
        return lambda p, x: act(x)
    if kind == "tokens":
        return lambda p, ids: p[names["embedding.table"]][ids] + p[names["tokens.position"]]
    if kind == "layer_norm":
        return lambda p, x: ref._layer_norm(x, own(p), "layer_norm")
    if kind == "transformer_block":
        roles = {"attention": "attention", "norm0": "layer_norm0", "norm1": "layer_norm1", "dense0": "dense0",
                 "dense1": "dense1"}
        return lambda p, x: ref.block_forward(own(p), x, heads, roles, causal=True)
    raise ValueError(f"no hand-written forward for {factor.name}")


def hand_written_pipeline(learner, loss, plan: Sharding, heads: int):
    """GPipe by hand: the stages of ``pl.stages`` (the same cut), jax.vjp per stage, optax.adam."""
    n, m, axis = plan.stages, plan.microbatches, plan.pipeline
    data = tuple(a for a in plan.batch if a != axis)
    globals_ = iter(learner.model.param_names)
    fns = []
    for stage in pl.stages(learner.model, n):
        parts = []
        for f in factors(stage):
            names = {local: next(globals_) for local in f.param_names}
            parts.append(_factor_forward(f, names, heads))
        fns.append(lambda p, x, parts=parts: functools.reduce(lambda h, g: g(p, h), parts, x))
    shapes = [s.cod[0] for s in pl.stages(learner.model, n)[:-1]]
    width = max(int(np.prod(t.shape)) for t in shapes)
    tx = optax.adam(1e-3)

    def pack(y):
        flat = y.reshape(y.shape[0], -1)
        return jnp.pad(flat, ((0, 0), (0, width - flat.shape[1])))

    def unpack(buf, t):
        return buf[:, :int(np.prod(t.shape))].reshape((buf.shape[0],) + t.shape)

    def schedule(params, xs, ys):
        s = jax.lax.axis_index(axis)
        mb = xs.shape[1]
        zeros = jnp.zeros((mb, width), jnp.float32)
        kept = jnp.zeros((m, mb, width), jnp.float32)
        fwd = [lambda c, j, k=k: pack(fns[k](params, xs[j] if k == 0 else unpack(c, shapes[k - 1])))
               for k in range(n - 1)] + [lambda c, j: zeros]
        carry = zeros
        for t in range(m + n - 1):
            j = t - s
            valid, jc = (j >= 0) & (j < m), jnp.clip(j, 0, m - 1)
            kept = jnp.where(valid, kept.at[jc].set(carry), kept)
            carry = jax.lax.ppermute(jax.lax.switch(s, fwd, carry, jc), axis, [(i, i + 1) for i in range(n - 1)])

        def bwd(k):
            def go(cot, j):
                x = xs[j] if k == 0 else unpack(kept[j], shapes[k - 1])
                if k == n - 1:
                    value, vjp = jax.vjp(lambda p, h: loss(fns[k](p, h), ys[j]), params, x)
                    dp, dx = vjp(jnp.ones((), value.dtype))
                else:
                    value, vjp = jax.vjp(fns[k], params, x)
                    dp, dx = vjp(unpack(cot, shapes[k]))
                    value = jnp.zeros((), jnp.float32)
                return dp, (zeros if k == 0 else pack(dx)), value
            return go
        branches = [bwd(k) for k in range(n)]
        cot, acc, total = zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32)
        for t in range(m + n - 1):
            j = t - (n - 1 - s)
            valid, jc = (j >= 0) & (j < m), jnp.clip(j, 0, m - 1)
            dp, handed, value = jax.lax.switch(s, branches, cot, jc)
            acc = jax.tree.map(lambda a, g, v=valid: a + jnp.where(v, g, 0), acc, dp)
            total = total + jnp.where(valid, value, 0)
            cot = jax.lax.ppermute(handed, axis, [(i, i - 1) for i in range(1, n)])
        acc = jax.tree.map(lambda a: jax.lax.pmean(jax.lax.psum(a, axis) / m, data), acc)
        return acc, jax.lax.pmean(jax.lax.psum(total, axis) / m, data)

    batch = data[0] if len(data) == 1 else data
    split = jax.shard_map(schedule, mesh=plan.mesh, check_vma=False,
                          in_specs=(P(), P(None, batch), P(None, batch)), out_specs=(P(), P()))

    def step(state, x, y):
        params, opt = state
        b = x.shape[0]
        grads, value = split(params, x.reshape((m, b // m) + x.shape[1:]), y.reshape((m, b // m) + y.shape[1:]))
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), value
    return step


def models(quick: bool) -> dict:
    """name -> (learner, hand-written forward, hand-written loss, x, y)."""
    rng = np.random.default_rng(0)
    sizes, batch = ([64, 256, 256, 16], 64) if quick else ([256, 1024, 1024, 64], 256)
    mlp = (ref.mlp_learner(sizes, 1e-3), ref.mlp_forward, ref.cross_entropy,
           rng.standard_normal((batch, sizes[0])).astype(np.float32),
           rng.integers(0, sizes[-1], batch).astype(np.int32))
    length, d, heads, blocks, batch = (16, 32, 4, 2, 16) if quick else (64, 128, 4, 2, 32)
    lm = pl.Learner(char_lm.build(length, d, heads, blocks), loss=char_lm.next_char_loss(length),
                    optimizer=pl.optim.adam(1e-3))
    ids = rng.integers(0, len(char_lm.VOCAB), (batch, length + 1)).astype(np.int32)
    return {"mlp": mlp, "char_lm": (lm, ref.char_lm_forward(heads, blocks), ref.next_char_cross_entropy,
                                    ids[:, :-1], ids[:, 1:])}


def hand_written(learner, forward, loss, plan: Sharding, heads: int = 4):
    """The reference step, jitted with the shardings paralens gives the same state (for a
    pipeline, the same GPipe schedule by hand)."""
    tx, step = ref.adam_step(forward, loss, 1e-3)
    if plan.pipeline is not None:
        step = hand_written_pipeline(learner, loss, plan, heads)
    layout = plan.state(learner.state_types, learner.state_axes)["params"]
    params = plan.place(learner.init(0)["params"], layout)
    opt = tx.init(params)

    def like(path, leaf):  # Adam's moments as their parameters, the count replicated
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return layout[names[-1]] if names and names[-1] in layout else plan.replicated()
    opt_layout = jax.tree_util.tree_map_with_path(like, opt)
    opt = jax.tree.map(lambda a, s: jax.device_put(a, s), opt, opt_layout)
    types = learner.step_term.input_types()
    jitted = jax.jit(step, donate_argnums=(0,), in_shardings=((layout, opt_layout), plan.data(types[1]),
                                                              plan.data(types[2])),
                     out_shardings=((layout, opt_layout), plan.replicated()))
    return jitted, (params, opt)


def per_device_bytes(tree) -> int:
    held: dict = {}
    for a in jax.tree.leaves(tree):
        for s in a.addressable_shards:
            held[s.device] = held.get(s.device, 0) + s.data.nbytes
    return max(held.values())


def bench(name, model, plan: Sharding, rounds: int, calls: int) -> dict:
    learner, forward, loss, x, y = model
    types = learner.step_term.input_types()
    xd, yd = jax.device_put(x, plan.data(types[1])), jax.device_put(y, plan.data(types[2]))
    p_step, p_state = learner.compile("jax", sharding=plan), learner.init(0, sharding=plan)
    r_step, r_state = hand_written(learner, forward, loss, plan)
    p_temp = p_step.lower(p_state, xd, yd).compile().memory_analysis().temp_size_in_bytes
    r_temp = r_step.lower(r_state, xd, yd).compile().memory_analysis().temp_size_in_bytes
    whole = sum(a.nbytes for a in jax.tree.leaves((p_state["params"], p_state["opt"])))
    p_bytes = per_device_bytes((p_state["params"], p_state["opt"]))
    r_bytes = per_device_bytes(r_state)
    ratios, tp_all, tr_all = [], [], []
    for _ in range(rounds):
        tp, p_state = timed(p_step, p_state, (xd, yd), calls)
        tr, r_state = timed(r_step, r_state, (xd, yd), calls)
        ratios.append(tp / tr)
        tp_all.append(tp)
        tr_all.append(tr)
    return {"model": name, "devices": plan.mesh.size, "mesh": dict(plan.mesh.shape), "rules": plan.rules,
            "fsdp": plan.fsdp, "step_ratio_median": statistics.median(ratios),
            "paralens_step_ms": 1e3 * statistics.median(tp_all), "jax_step_ms": 1e3 * statistics.median(tr_all),
            "per_device_state_fraction": p_bytes / whole, "jax_per_device_state_fraction": r_bytes / whole,
            "temp_bytes": p_temp, "jax_temp_bytes": r_temp}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small models, few rounds (a smoke run)")
    ap.add_argument("--models", default="mlp,char_lm", help="which models, comma-separated (mlp, char_lm)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every step ratio <= 1.05")
    a = ap.parse_args(argv)
    devices = np.array(jax.devices())
    if len(devices) < 8 or len(devices) % 2:
        raise SystemExit(f"bench_sharding needs 8 devices (or an even number), found {len(devices)}")
    devices = devices[:8]
    results = []
    wanted = a.models.split(",")
    for name, model in models(a.quick).items():
        if name not in wanted:
            continue
        for kind, plan in plans(devices).items():
            r = bench(name, model, plan, 3 if a.quick else a.rounds, 2 if a.quick else a.calls)
            r["sharding"] = kind
            results.append(r)
            print(f"{name:8s} {kind:14s} step {r['step_ratio_median']:.3f}x of jax+optax "
                  f"({r['paralens_step_ms']:.2f} vs {r['jax_step_ms']:.2f} ms), per device "
                  f"{r['per_device_state_fraction']:.4f} of the state (jax {r['jax_per_device_state_fraction']:.4f}), "
                  f"temp {r['temp_bytes'] / 2**20:.2f} MiB (jax {r['jax_temp_bytes'] / 2**20:.2f} MiB)", flush=True)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(results, indent=1))
    if a.check:
        bad = [f"{r['model']} {r['sharding']}: {r['step_ratio_median']:.3f}x" for r in results
               if r["step_ratio_median"] > 1.05]
        if bad:
            print("FAIL: step ratio above 1.05:", "; ".join(bad))
            raise SystemExit(1)
        print("ok: every step ratio <= 1.05")


if __name__ == "__main__":
    main()
