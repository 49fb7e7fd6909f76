"""Backends: functors from terms to computations.

* :mod:`paralens.backends.numpy`: the eager reference;
* :mod:`paralens.backends.jax`: traceable by ``jax.jit``, ``jax.grad``, export;
* :mod:`paralens.backends.sympy`: symbolic arrays, for derivations by hand.

Each has ``compile(term) -> fn(params, *args)``.
"""
