"""Every public function, class and method documents its arguments, what it returns and what it
raises, in Google style (the API reference is generated from these docstrings).

Public means: the names in ``__all__`` of paralens and of its public modules, the entry points of
the backends, and the public methods of their classes. A parameter is documented when the
docstring's ``Args:`` section (``Attributes:`` for a record's fields) has an entry for it; a
function whose body returns a value has a ``Returns:`` section; one whose body raises has a
``Raises:`` section.
"""

import ast
import importlib
import inspect
import re
import textwrap

import pytest

from helpers import parse

#: module -> the names it makes public (``None``: its ``__all__``)
PUBLIC = {
    "paralens": None, "paralens.nn": None, "paralens.losses": None, "paralens.optim": None, "paralens.init": None,
    "paralens.bilevel": None, "paralens.learn": None, "paralens.dream": None, "paralens.z2": None,
    "paralens.diagram": None, "paralens.backends": None,
    "paralens.backends.numpy": ["compile", "init"], "paralens.backends.jax": ["compile", "init", "CompiledStep"],
    "paralens.backends.sympy": ["compile", "init", "Formulas"], "paralens.backends.z2": ["compile"],
    "paralens.backends.fitting": None, "paralens.backends.artifacts": None, "paralens.backends.checkpoint": None,
    "paralens.backends.sharding": None, "paralens.backends.pipeline": None, "paralens.backends.onnx": None,
}
_HEADER = re.compile(r"^\s*(Args|Attributes|Returns|Yields|Raises|Examples?|Note|Notes|Warning):\s*$")


def _sections(doc: str) -> dict[str, str]:
    out, current = {}, None
    for line in doc.splitlines():
        m = _HEADER.match(line)
        if m:
            current = m.group(1)
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def _body(obj):
    try:
        return parse(textwrap.dedent(inspect.getsource(obj))).body[0]
    except (OSError, TypeError, SyntaxError):
        return None


def _own(node):
    """The nodes of a function's own body (not of functions or classes nested in it)."""
    todo = list(ast.iter_child_nodes(node))
    while todo:
        n = todo.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(n))


def _problems(name: str, obj) -> list[str]:
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return [f"{name}: no docstring"]
    sections = _sections(doc)
    documented = sections.get("Args", "") + sections.get("Attributes", "")
    try:
        params = [p for p in inspect.signature(obj).parameters.values() if p.name not in ("self", "cls")]
    except (TypeError, ValueError):
        params = []
    out = [f"{name}: argument {p.name!r} not in Args" for p in params
           if not re.search(r"^\s*\*{0,2}" + re.escape(p.name) + r"\b", documented, re.M)]
    body = _body(obj)
    if body is not None and isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef)):
        own = list(_own(body))
        if any(isinstance(n, ast.Return) and n.value is not None for n in own) and "Returns" not in sections \
                and "Yields" not in sections:
            out.append(f"{name}: returns a value but has no Returns")
        if any(isinstance(n, ast.Raise) for n in own) and "Raises" not in sections:
            out.append(f"{name}: raises but has no Raises")
    return out


def public_objects():
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        for n in names or module.__all__:
            obj = getattr(module, n)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or \
                    not getattr(obj, "__module__", "").startswith("paralens"):
                continue
            yield module_name, f"{module_name}.{n}", obj
            if inspect.isclass(obj):
                for m, member in vars(obj).items():
                    if not m.startswith("_") and (inspect.isfunction(member) or
                                                  isinstance(member, (staticmethod, classmethod))):
                        yield module_name, f"{module_name}.{n}.{m}", getattr(obj, m)


@pytest.mark.parametrize("module", list(PUBLIC))
def test_every_public_object_documents_its_arguments_returns_and_raises(module):
    problems = [p for where, name, obj in public_objects() if where == module for p in _problems(name, obj)]
    assert not problems, "\n".join(problems)
