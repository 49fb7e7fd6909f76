"""Exported steps run without paralens; sharded steps equal single-device steps."""

import os
import subprocess
import sys
import textwrap

import numpy as np

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


def learner():
    return pl.Learner(pl.nn.mlp([6, 12, 3], activation=pl.nn.tanh),
                      loss=pl.losses.softmax_cross_entropy_with_integer_labels(), optimizer=pl.optim.adam(1e-2))


def test_exported_step_runs_where_paralens_cannot_be_imported(tmp_path):
    lr = learner()
    step = lr.compile("jax", donate=False)
    state = lr.init(0, backend="jax")
    path = tmp_path / "step.jaxexport"
    step.export(str(path))
    rng = np.random.default_rng(0)
    for batch in (7, 16):  # the batch dimension is symbolic
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        y = rng.integers(0, 3, batch).astype(np.int32)
        new_state, loss = step(state, x, y)
        np.savez(tmp_path / "inputs.npz", x=x, y=y,
                 **{f"s/{a}/{k}": np.asarray(v) for a in state for k, v in state[a].items()})
        script = NO_PARALENS + textwrap.dedent(f"""
            import jax, numpy as np
            blob = open({str(path)!r}, "rb").read()
            exp = jax.export.deserialize(blob)
            d = np.load({str(tmp_path / 'inputs.npz')!r})
            state = {{}}
            for key in d.files:
                if key.startswith("s/"):
                    _, a, k = key.split("/", 2)
                    state.setdefault(a, {{}})[k] = d[key]
            new_state, loss = exp.call(state, d["x"], d["y"])
            np.savez({str(tmp_path / 'out.npz')!r}, loss=np.asarray(loss),
                     **{{"p/" + k: np.asarray(v) for k, v in new_state["params"].items()}})
        """)
        subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
        out = np.load(tmp_path / "out.npz")
        np.testing.assert_allclose(out["loss"], loss, rtol=1e-6)
        for k, v in new_state["params"].items():
            np.testing.assert_allclose(out[f"p/{k}"], v, rtol=1e-6, atol=1e-7)


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
