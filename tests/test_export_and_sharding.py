"""Exported steps run without paralens; sharded steps equal single-device steps."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import paralens as pl

NO_PARALENS = textwrap.dedent("""
    import sys
    sys.modules["paralens"] = None          # make `import paralens` fail in this process
    try:
        import paralens
    except ImportError:
        pass
    else:
        raise SystemExit("paralens is importable")
""")


# The state is a tree of dicts and tuples; it travels to the other process as arrays and a JSON
# outline, read back there with numpy and json alone.
LOAD_TREE = textwrap.dedent("""
    import json
    def load_tree(d):
        def build(node):
            if "d" in node:
                return {k: build(v) for k, v in node["d"]}
            if "t" in node:
                return tuple(build(v) for v in node["t"])
            return d["leaf%d" % node["l"]]
        return build(json.loads(str(d["outline"])))
""")


def save_tree(path, tree, **extra):
    arrays = {}

    def outline(node):
        if isinstance(node, dict):
            return {"d": [[k, outline(v)] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {"t": [outline(v) for v in node]}
        arrays[f"leaf{len(arrays)}"] = np.asarray(node)
        return {"l": len(arrays) - 1}
    np.savez(path, outline=json.dumps(outline(tree)), **arrays, **extra)


def learner(dtype="float32"):
    return pl.Learner(pl.nn.mlp([6, 12, 3], activation=pl.nn.tanh, dtype=dtype),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))


def run_exported(tmp_path, path, state, x, y):
    save_tree(tmp_path / "inputs.npz", state, x=x, y=y)
    script = NO_PARALENS + LOAD_TREE + textwrap.dedent(f"""
        import jax, numpy as np
        jax.config.update("jax_enable_x64", True)
        exp = jax.export.deserialize(open({str(path)!r}, "rb").read())
        d = np.load({str(tmp_path / 'inputs.npz')!r})
        new_state, loss = exp.call(load_tree(d), d["x"], d["y"])
        np.savez({str(tmp_path / 'out.npz')!r}, loss=np.asarray(loss),
                 **{{"p/" + k: np.asarray(v) for k, v in new_state["params"].items()}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    return np.load(tmp_path / "out.npz")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scan", [False, True], ids=["step", "scanned"])
def test_exported_step_runs_where_paralens_cannot_be_imported(tmp_path, dtype, scan):
    lr = learner(dtype)
    step = lr.compile("jax", donate=False, scan=scan)
    state = lr.init(0)  # NumPy arrays, typed as the step term says (float64 hyperparameters for float64)
    assert all(np.asarray(v).dtype == dtype for v in state["hyper"].values())
    path = tmp_path / "step.jaxexport"
    step.export(str(path))
    rng = np.random.default_rng(0)
    for batch in (7, 16):  # the batch dimension (and the number of steps) is symbolic
        lead = (3, batch) if scan else (batch,)
        x = rng.standard_normal(lead + (6,)).astype(dtype)
        y = rng.integers(0, 3, lead).astype(np.int32)
        new_state, loss = step(state, x, y)
        out = run_exported(tmp_path, path, state, x, y)
        tol = dict(rtol=1e-6, atol=1e-7) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out["loss"], loss, **tol)
        for k, v in new_state["params"].items():
            assert out[f"p/{k}"].dtype == dtype
            np.testing.assert_allclose(out[f"p/{k}"], v, **tol)


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    import paralens as pl
    from jax.sharding import Mesh
    assert len(jax.devices()) == 8, jax.devices()
    def make():
        return pl.Learner(pl.nn.mlp([6, 12, 3], activation=pl.nn.tanh),
                          loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))
    lr = make()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = lr.compile("jax", mesh=mesh)
    single = lr.compile("jax")
    s1, s2 = lr.init(0, backend="jax"), lr.init(0, backend="jax")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.int32)
    hlo = sharded.lower(s1, x, y).compile().as_text()
    assert "all-reduce" in hlo, "no all-reduce in the sharded program"
    for _ in range(5):
        s1, l1 = sharded(s1, x, y)
        s2, l2 = single(s2, x, y)
        np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for k in s1["params"]:
        np.testing.assert_allclose(s1["params"][k], s2["params"][k], rtol=1e-5, atol=1e-6)
    assert len(s1["params"]["dense0.W"].sharding.device_set) == 8
    print("ok")
""")


def test_sharded_step_equals_single_device_and_all_reduces():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]
