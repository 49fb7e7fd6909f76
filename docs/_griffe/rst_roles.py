"""A Griffe extension for the API reference: our docstrings' reStructuredText markup as Markdown.

paralens docstrings are Google style with a little reStructuredText, which reads well in
``help()``: ``code`` in double backticks, roles such as :func:`~paralens.R`, doctest
examples (``>>>``) and literal blocks after ``::``. mkdocstrings renders Markdown, so this
extension rewrites each docstring as it is loaded:

* a role becomes a cross-reference, ``[R][paralens.R]``; a name without a dot is looked up
  in the object's module, then in ``paralens``. The site is built with ``--strict``, so a
  reference to anything the reference pages do not document fails the build;
* double backticks become single ones;
* doctest examples and ``::`` literal blocks become fenced code blocks.
"""

from __future__ import annotations

import importlib
import re

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|data|mod|obj|exc):`(~?)([^`<>]+?)`")
_DOUBLE = re.compile(r"``([^`]+)``")


def _qualify(target: str, obj: griffe.Object) -> str:
    """The full path of ``target`` as written in ``obj``'s docstring: as written if it starts with
    ``paralens``, else the first of ``obj``'s enclosing scopes (its class, its module, ...), then
    ``paralens``, where it names something."""
    target = target.strip().lstrip(".")
    if target.startswith("paralens"):
        return target
    scopes = obj.canonical_path.split(".")
    for i in range(len(scopes), 0, -1):
        candidate = ".".join(scopes[:i] + [target])
        if _exists(candidate):
            return candidate
    return f"paralens.{target}"


def _exists(path: str) -> bool:
    """Whether ``path`` names an importable object (a module, or an attribute of one)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                value = getattr(value, name)
        except AttributeError:
            return False
        return True
    return False


def _roles(text: str, obj: griffe.Object) -> str:
    def link(m: re.Match) -> str:
        short, target = m.group(2) == "~", m.group(3)
        path = _qualify(target, obj)
        shown = path.rsplit(".", 1)[-1] if short else target
        return f"[`{shown}`][{path}]"
    return _ROLE.sub(link, text)


def _blocks(text: str) -> str:
    """Doctest examples and ``::`` literal blocks as fenced code blocks."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        if line.rstrip().endswith("::") and not stripped.startswith((">>>", "...")) and i + 2 < len(lines) \
                and not lines[i + 1].strip() and lines[i + 2].strip():
            indent = len(line) - len(stripped)
            out.append(line.rstrip()[:-1])
            out.append("")
            j = i + 2
            body = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                body.append(lines[j])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            pad = " " * indent
            out += [f"{pad}```python", *body, f"{pad}```", ""]
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _code(text: str) -> str:
    """Double backticks as single ones, outside fenced blocks."""
    parts = re.split(r"(```.*?```)", text, flags=re.S)
    return "".join(p if p.startswith("```") else _DOUBLE.sub(r"`\1`", p) for p in parts)


class RstRoles(griffe.Extension):
    """Rewrite every docstring loaded (see the module's docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _code(_roles(_blocks(obj.docstring.value), obj))
