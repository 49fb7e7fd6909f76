"""A learner past one device: its state and batch laid out over a ``jax.sharding.Mesh``.

Every parameter wire names its axes (``dense``'s ``W`` is ``("embed", "mlp")``, attention's
``Wq`` ``("embed", "heads")``, see :attr:`paralens.Term.param_axes`); a rule table maps those
logical names to mesh axes, as MaxText's ``logical_axis_rules`` and flax's
``logical_to_mesh_sharding`` do. XLA's SPMD partitioner does the rest: the compiled step gathers
what it needs, and reduces what it must.

* **data parallelism**: ``Sharding(mesh)``: the batch over the mesh's first axis, the state
  replicated;
* **FSDP / ZeRO-3**: ``fsdp="data"``: each leaf of the parameters and optimizer state is also
  split over ``data`` along its largest axis that ``data`` divides, so a device holds 1/n of them;
* **tensor parallelism** (Megatron): ``rules={"mlp": "model", "heads": "model"}`` on a
  ``("data", "model")`` mesh: a dense layer ``embed -> mlp`` is split by columns, the next
  ``mlp -> embed`` by rows, attention by heads; combine with ``fsdp="data"`` on the same mesh.

An optimizer state leaf keyed by a parameter's name and of its shape (Adam's ``mu`` and ``nu``)
takes that parameter's layout; any other (a step count, a factored moment) is replicated unless
FSDP splits it. An axis the mesh axes do not divide (a bias of 10 classes over 4 devices) is
replicated: see :meth:`Sharding.describe`.

>>> import jax, numpy as np, paralens as pl
>>> from paralens.backends.sharding import Sharding
>>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
>>> plan = Sharding(mesh, {"mlp": "model", "heads": "model"}, fsdp="data")
>>> plan.spec(("embed", "mlp"), (64, 128))
P('data', 'model')
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as Spec

from paralens.types import ArrayType

__all__ = ["Sharding"]


class Sharding:
    """How a learner's state and batches lie on a device mesh.

    Args:
        mesh: the ``jax.sharding.Mesh`` (over one process's devices or, with
            ``jax.distributed``, every process's).
        rules: logical axis name -> mesh axis (a name, a tuple of names, or ``None`` for
            replicated), as a mapping or a sequence of pairs (MaxText's ``logical_axis_rules``);
            a logical name without a rule is replicated.
        batch: the mesh axis (or tuple of axes) the batch is split over; ``None`` (the default):
            the mesh's first axis; ``()``: none (every device sees the whole batch).
        fsdp: a mesh axis to split every leaf of the parameters and optimizer state over as well
            (its largest axis that it divides and no rule has split); ``None``: no FSDP.
        pipeline: a mesh axis whose devices run the model's pipeline stages, one each (the
            model's ``>>`` factors cut by :func:`paralens.stages`), with a GPipe schedule
            (:mod:`paralens.backends.pipeline`); ``None``: no pipeline. The batch is split over
            ``batch`` beside it (the mesh's first axis: give a mesh whose first axis is the
            data axis, or ``batch=``).
        microbatches: how many microbatches each batch is cut into for the pipeline.

    Raises:
        TypeError: ``mesh`` is not a ``Mesh``, or a rule is not a name or tuple of names.
        ValueError: a rule, ``batch``, ``fsdp`` or ``pipeline`` names an axis the mesh does not have;
            the batch is split over the pipeline axis; ``microbatches`` is not a positive int.
    """

    def __init__(self, mesh, rules: Mapping | tuple = (), *, batch=None, fsdp: str | None = None,
                 pipeline: str | None = None, microbatches: int = 1):
        if not isinstance(mesh, Mesh):
            raise TypeError(f"Sharding needs a jax.sharding.Mesh, got {type(mesh).__name__}")
        self.mesh = mesh
        pairs = rules.items() if isinstance(rules, Mapping) else rules
        self.rules = {}
        for name, target in pairs:
            if type(name) is not str:
                raise TypeError(f"a sharding rule maps a logical axis name (a str) to mesh axes, got {name!r}")
            self.rules.setdefault(name, self._axes(target, f"the rule for {name!r}"))
        self.batch = self._axes(mesh.axis_names[0] if batch is None else batch, "batch")
        self.fsdp = None if fsdp is None else self._axes(fsdp, "fsdp")
        if self.fsdp is not None and len(self.fsdp) != 1:
            raise ValueError(f"fsdp is one mesh axis, got {fsdp!r}")
        self.pipeline = None if pipeline is None else self._axes(pipeline, "pipeline")
        if self.pipeline is not None:
            if len(self.pipeline) != 1:
                raise ValueError(f"pipeline is one mesh axis, got {pipeline!r}")
            self.pipeline = self.pipeline[0]
            if self.pipeline in self.batch:
                raise ValueError(f"the batch is split over {self.batch}, which cannot hold the pipeline's stages "
                                 f"({self.pipeline!r}) too: give batch= another axis of the mesh")
        if type(microbatches) is not int or microbatches < 1:
            raise ValueError(f"microbatches must be a positive int, got {microbatches!r}")
        self.microbatches = microbatches

    @property
    def stages(self) -> int:
        """The number of pipeline stages: the size of the pipeline axis (1 without one)."""
        return 1 if self.pipeline is None else self.mesh.shape[self.pipeline]

    def _axes(self, target, what: str) -> tuple[str, ...] | None:
        if target is None:
            return None
        names = (target,) if isinstance(target, str) else target
        if not isinstance(names, (tuple, list)) or not all(isinstance(a, str) for a in names):
            raise TypeError(f"{what}: a mesh axis name or a tuple of them, got {target!r}")
        unknown = [a for a in names if a not in self.mesh.axis_names]
        if unknown:
            raise ValueError(f"{what}: the mesh has no axis {unknown[0]!r}; its axes are {self.mesh.axis_names}")
        return tuple(names)

    def _size(self, axes) -> int:
        return math.prod(self.mesh.shape[a] for a in axes)

    def spec(self, axes: tuple | None, shape: tuple[int, ...]) -> Spec:
        """The ``PartitionSpec`` of an array of ``shape`` whose axes have the logical names ``axes``.

        Args:
            axes: one logical name (or ``None``) per axis, or ``None`` for no names.
            shape: the array's shape.

        Returns:
            Each axis's mesh axes: by the rules, where they divide it and are not used by an
            earlier axis; then the FSDP axis on the largest axis left that it divides.
        """
        parts: list = [None] * len(shape)
        used: set[str] = set()
        for i, (name, n) in enumerate(zip(axes or (None,) * len(shape), shape)):
            target = self.rules.get(name) if name is not None else None
            if target and not used.intersection(target) and n % self._size(target) == 0:
                parts[i] = target[0] if len(target) == 1 else target
                used.update(target)
        if self.fsdp is not None and not used.intersection(self.fsdp):
            size = self._size(self.fsdp)
            free = [i for i, n in enumerate(shape) if parts[i] is None and n % size == 0 and n >= size]
            if free:
                parts[max(free, key=lambda i: (shape[i], -i))] = self.fsdp[0]
        while parts and parts[-1] is None:
            parts.pop()
        return Spec(*parts)

    def state(self, types, axes):
        """The ``NamedSharding`` of each leaf of a state.

        Args:
            types: the state's types (``learner.state_types``: a tree of ``ArrayType``).
            axes: the logical axes of each leaf, the same tree (``learner.state_axes``); ``None``: no
                names (only FSDP splits the state).

        Returns:
            The tree of ``NamedSharding``, shaped as the state.
        """
        if isinstance(types, dict):
            return {k: self.state(v, None if axes is None else axes[k]) for k, v in types.items()}
        if isinstance(types, tuple):
            return tuple(self.state(t, a) for t, a in zip(types, axes or (None,) * len(types)))
        return NamedSharding(self.mesh, self.spec(axes, types.shape))

    def data(self, types, lead: int = 1):
        """The ``NamedSharding`` of batched data of these types: its batch axis (after ``lead - 1``
        stacked-step axes) split over the batch axes, every other axis whole.

        Args:
            types: the data's types (an ``ArrayType`` or a tuple of them); an unbatched one is
                replicated.
            lead: 1 for one batch, 2 for a stack of batches (a scanned step).

        Returns:
            A ``NamedSharding``, or a tuple of them shaped as ``types``.
        """
        batch = self.batch[0] if len(self.batch) == 1 else self.batch

        def one(t):
            if isinstance(t, tuple):
                return tuple(one(u) for u in t)
            if isinstance(t, ArrayType) and not t.batched:
                return NamedSharding(self.mesh, Spec())
            return NamedSharding(self.mesh, Spec(*([None] * (lead - 1)), batch))
        return one(types)

    def replicated(self) -> NamedSharding:
        """The layout of a value every device holds whole (the loss).

        Returns:
            ``NamedSharding(mesh, PartitionSpec())``.
        """
        return NamedSharding(self.mesh, Spec())

    def place(self, state, shardings):
        """``state`` (host arrays) laid out by ``shardings``, each device given only its shards:
        no array is put whole on one device first (``jax.make_array_from_callback``), and with
        several processes each process gives its own devices' shards.

        Args:
            state: the state, as NumPy arrays (or anything ``numpy.asarray`` reads).
            shardings: :meth:`state`'s tree for it.

        Returns:
            The state as sharded ``jax.Array`` leaves.
        """
        def put(v, s):
            host = np.asarray(v)
            return jax.make_array_from_callback(host.shape, s, lambda index: host[index])
        return jax.tree.map(put, state, shardings)

    def describe(self, types, axes) -> list[str]:
        """One line per state leaf: its path, shape and partition spec (what a user checks a layout
        by, and where a replicated leaf shows up).

        Args:
            types: the state's types (``learner.state_types``).
            axes: the logical axes (``learner.state_axes``).

        Returns:
            The lines.
        """
        flat = jax.tree_util.tree_flatten_with_path(self.state(types, axes))[0]
        shapes = jax.tree_util.tree_leaves(types, is_leaf=lambda t: isinstance(t, ArrayType))
        return [f"{jax.tree_util.keystr(path)} {tuple(t.shape)} {s.spec}" for (path, s), t in zip(flat, shapes)]

    def __repr__(self):
        return (f"Sharding(mesh={dict(self.mesh.shape)}, rules={self.rules}, batch={self.batch}, "
                f"fsdp={self.fsdp}, pipeline={self.pipeline}, microbatches={self.microbatches})")
