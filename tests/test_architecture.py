"""The shape of the code: one door to the backends, one primitive registry that every backend
implements, and a core without import circles."""

import ast
import pathlib

import networkx as nx
import numpy as np
import pytest

import paralens as pl
from helpers import parse
from paralens import backends

ROOT = pathlib.Path(__file__).resolve().parents[1]
LENSES = sorted((ROOT / "lenses").glob("*.py"))
DOOR = {"get", "of", "available", "Backend"}  # what lenses/ may take from paralens.backends


def _imports(path):
    """``(node, imported module, names)`` for every import in ``path`` (function bodies too)."""
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node, a.name, []
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            yield node, module, [a.name for a in node.names]


def test_lenses_reach_backends_only_through_the_door():
    offences = []
    for path in LENSES:
        tree = parse(path.read_text())
        for node, module, names in _imports(path):
            where = f"{path.name}:{node.lineno}"
            if module.lstrip(".") in ("importlib",) or module.startswith("importlib"):
                offences.append(f"{where} imports importlib")
            if module in (".backends", "paralens.backends") and set(names) - DOOR:
                offences.append(f"{where} imports {sorted(set(names) - DOOR)} from the backends")
            if module.startswith((".backends.", "paralens.backends.")):
                offences.append(f"{where} imports the backend module {module}")
            if module == "." and set(names) & {"backends"} and set(names) - {"backends"} & {"numpy", "jax"}:
                offences.append(f"{where} imports {names}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
                offences.append(f"{path.name}:{node.lineno} calls __import__")
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "backends" \
                    and node.attr not in DOOR:
                offences.append(f"{path.name}:{node.lineno} reads backends.{node.attr}")
    assert not offences, offences


def test_no_import_circle_among_the_core_modules():
    g = nx.DiGraph()
    for path in LENSES:
        me = path.stem
        g.add_node(me)
        for _, module, names in _imports(path):
            if module == ".":
                targets = names
            elif module.startswith(".") and not module.startswith(".."):
                targets = [module[1:].split(".")[0]]
            else:
                continue
            for t in targets:
                if (ROOT / "lenses" / f"{t}.py").exists():
                    g.add_edge(me, t)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles
    assert nx.has_path(g, "terms", "prims") and not nx.has_path(g, "prims", "terms")


def test_unknown_backends_are_refused_with_the_list_of_available_ones():
    available = r"unknown backend 'torch'; available backends: (.*, )?jax, matplotlib, numpy, onnx, sympy"
    with pytest.raises(ValueError, match=available):
        backends.get("torch")
    learner = pl.Learner(pl.nn.dense(2, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.1))
    with pytest.raises(ValueError, match="available backends: (.*, )?jax, matplotlib, numpy, onnx, sympy"):
        learner.compile("torch")
    with pytest.raises(ValueError, match="available backends"):
        pl.nn.dense(2, 1).init(backend="torch")


def test_every_backend_implements_the_protocol_or_says_it_cannot():
    for name in backends.available():
        be = backends.get(name)
        assert isinstance(be, backends.Backend) and be.name == name
        for method in ("compile", "init", "compile_step", "array"):
            assert callable(getattr(be, method))
    with pytest.raises(NotImplementedError, match="the numpy backend cannot compile bilevel"):
        pl.Bilevel(pl.nn.dense(2, 1), pl.losses.mse(reduction="none"), pl.optim.sgd(0.1),
                   hyper={"l2": pl.Hyper(0.1)}).compile("numpy")
    # SymPy initialises parameters as symbols, and runs a learner's step as formulas
    learner = pl.Learner(pl.nn.dense(1, 1), loss=pl.losses.mse(), optimizer=pl.optim.sgd(0.5))
    state = learner.init(backend="sympy")
    (w,) = state["params"]["dense.W"].free_symbols
    new, loss = learner.compile("sympy")(state, np.ones((1, 1)), np.zeros((1, 1)))
    assert w in loss.free_symbols and str(w) == "dense.W[0,0]"


def test_a_new_backend_is_one_registration_away():
    class Tripling(backends.Backend):
        name = "tripling"

        def compile(self, term, **options):
            inner = backends.get("numpy").compile(term)
            return lambda params, *args: 3 * inner(params, *args)
    backends.register("tripling", Tripling)
    try:
        assert "tripling" in backends.available()
        f = pl.nn.dense(2, 1)
        p = f.init(0)
        assert np.allclose(backends.get("tripling").compile(f)(p, np.ones((1, 2))),
                           3 * backends.get("numpy").compile(f)(p, np.ones((1, 2))))
        with pytest.raises(NotImplementedError, match="the tripling backend cannot initialise"):
            f.init(backend="tripling")
        with pytest.raises(ValueError, match="exists already"):
            backends.register("tripling", Tripling)
    finally:
        backends._FACTORIES.pop("tripling")
        backends._LOADED.pop("tripling", None)


@pytest.mark.parametrize("name", ["numpy", "jax", "sympy"])
def test_every_registered_primitive_is_implemented_by_every_array_backend(name):
    meaningless = {"sympy": {"foreign"}}  # an opaque box of JAX code has no formula
    be = backends.get(name)

    def implemented(prim):
        try:
            return callable(be.rule(prim))
        except NotImplementedError:
            return False
    missing = {p for p in set(pl.PRIMS) - meaningless.get(name, set()) if not implemented(p)}
    assert not missing, f"the {name} backend has no rule for {sorted(missing)}"


def test_an_elementwise_primitive_named_as_the_library_names_it_needs_no_table_entry():
    # tan and arctan are declared in prims.py and wrapped in wires.py, and nowhere else
    for name in ("numpy", "jax", "sympy"):
        table = backends.get(name).__class__.__module__
        source = (ROOT / "backends" / f"{table.rsplit('.', 1)[-1]}.py").read_text()
        assert '"tan"' not in source and '"arctan"' not in source
        assert callable(backends.get(name).rule("tan")) and callable(backends.get(name).rule("arctan"))


def test_one_primitive_registry():
    from paralens import prims, terms
    assert pl.PRIMS is prims.PRIMS and "scan" in pl.PRIMS
    registries = [n for mod in (terms, prims) for n, v in vars(mod).items()
                  if isinstance(v, dict) and v and all(isinstance(p, prims.Prim) for p in v.values())]
    assert registries == ["PRIMS"]
