"""optax's own alias tests (``optax/_src/alias_test.py``, as installed, unchanged), run through
``pl.optim.to_optax``: only its optimizer lookup ``_get_opt`` is replaced, by
``to_optax(pl.optim.<name>(**the same kwargs))``.

The tests that go through the lookup run: optimization in float32 and complex64 on the parabola
and Rosenbrock (with ``optax.tree.map_params`` on the state and no recompilation), extra
arguments, ``inject_hyperparams``, explicit state dtypes, dtype preservation, dtype stability
(float16 to complex128) and gradient accumulation (``MultiSteps``). A setup whose optimizer
paralens lacks is skipped, naming it; so is a known gap, naming it (see ``GAPS``).
"""

import functools
import importlib.util
import pathlib

import pytest

pytestmark = pytest.mark.slow  # 576 tests, about two minutes: CI runs them

optax = pytest.importorskip("optax")
pytest.importorskip("absl.testing.absltest")
pytest.importorskip("sklearn")

import paralens as pl  # noqa: E402

SOURCE = pathlib.Path(optax.__file__).parent / "_src" / "alias_test.py"
if not SOURCE.exists():
    pytest.skip(f"the installed optax ships no {SOURCE.name}", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("optax_alias_test", SOURCE)
suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite)


def _get_opt(self, opt_name: str):
    """optax's ``_get_opt``, through paralens: ``to_optax(pl.optim.<opt_name>(...))`` with
    ``pl.optim.<opt_name>``'s own signature (``inject_hyperparams`` reads it)."""
    ours = getattr(pl.optim, opt_name, None)
    if ours is None:
        raise suite.absltest.SkipTest(f"paralens has no optimizer {opt_name!r} yet")

    @functools.wraps(ours)
    def factory(*args, **kwargs):
        return pl.optim.to_optax(ours(*args, **kwargs))
    return factory


suite._get_opt = _get_opt


#: What paralens cannot do yet, by a word of the setup's parameters, and why: skipped, saying so.
GAPS: dict[str, str] = {}


class TestAliasThroughToOptax(suite.AliasTest):
    """optax's ``AliasTest``, every optimizer built by paralens."""

    def setUp(self):
        super().setUp()
        params = self._test_params_reprs.get(self._testMethodName, "")
        for word, why in GAPS.items():
            if word in params:
                self.skipTest(why)


del suite.AliasTest  # collected once, under our name
