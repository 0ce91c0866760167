"""A Griffe extension for the API reference: the code's docstrings name other objects with Sphinx roles
(:func:`history_weights`, :mod:`~fashionrec.contract.ops`, :mod:`.store`), which Markdown would show as
literal text. Each role becomes an optional cross-reference: a link where the object is on the site,
plain code where it is not (an optional reference never fails the strict build).

Loaded by mkdocstrings from mkdocs.yml; not part of the fashionrec package, and not copied into the site
(mkdocs.yml excludes it).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|obj|exc|const):`([^`]+)`")
TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")


def _exists(obj: griffe.Object, path: str) -> bool:
    try:
        obj.modules_collection[path]
    except Exception:  # noqa: BLE001 - any lookup failure means "not on the site"
        return False
    return True


def _resolve(obj: griffe.Object, target: str) -> str:
    """The full dotted path ``target`` names from ``obj``'s scope; ``target`` itself when unknown."""
    if target.startswith("."):
        module = obj if obj.is_module else obj.module
        package = module if module.is_init_module else module.parent
        base = package.path if package is not None else module.path
        candidate = f"{base}.{target.lstrip('.')}"
        return candidate if _exists(obj, candidate) else target.lstrip(".")
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # noqa: BLE001 - a builtin, or a name outside the loaded packages
        resolved = None
    if resolved:
        candidate = f"{resolved}.{rest}" if rest else resolved
        if _exists(obj, candidate):
            return candidate
    return target


def _rewrite(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1).strip()
        titled = TITLED.match(body)
        title, target = (titled["title"], titled["target"]) if titled else (None, body)
        target = target.lstrip("!")
        short = target.startswith("~")
        target = target.lstrip("~")
        if title is None:
            title = target.rpartition(".")[2] if short else target.lstrip(".")
        identifier = html.escape(_resolve(obj, target), quote=True)
        return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'

    return ROLE.sub(replace, text)


def _walk(obj: griffe.Object, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj.docstring is not None and ":" in obj.docstring.value:
        obj.docstring.value = _rewrite(obj, obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Turn Sphinx cross-reference roles in docstrings into optional autorefs."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _walk(pkg, set())
