"""Library versions as comparable tuples: ``version_tuple("1.23.2") < (1, 30)``, never string order.

``"1.9" > "1.30"`` as strings; as tuples ``(1, 9) < (1, 30)``. Pre-release and local
suffixes (``1.30.0rc1``, ``2.14.1+cpu``, ``1.26.4.dev0``) keep only their leading
numeric release part, which is what a minimum-version check needs.
"""
from __future__ import annotations

import importlib
import re

_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


def version_tuple(text: str) -> tuple[int, ...]:
    """The numeric release part of a version string; ``()`` when there is none."""
    m = _RELEASE.match(str(text))
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def module_version(name: str) -> str | None:
    """``<module>.__version__`` when ``name`` imports, else None."""
    try:
        mod = importlib.import_module(name)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "") or "") or None


def at_least(text: str, minimum: tuple[int, ...]) -> bool:
    """``text`` is a release >= ``minimum`` (missing trailing parts count as 0)."""
    have = version_tuple(text)
    if not have:
        return False
    width = max(len(have), len(minimum))
    return have + (0,) * (width - len(have)) >= tuple(minimum) + (0,) * (width - len(minimum))
