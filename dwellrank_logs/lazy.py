"""Public names resolved on first use (PEP 562), for packages whose imports are heavy.

``from ranking import estimate_tskip`` should not pay for LightGBM and matplotlib,
nor ``from engagement.config import WindowConfig`` for torch: a package lists
``name -> module`` and resolves each name when it is first read.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, str], public: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` resolving ``sources`` (public name -> module).

    Submodules resolve as attributes too (``ranking.features``), as after an explicit
    import; any other name raises ``AttributeError`` naming the package.
    """

    def __getattr__(name: str) -> Any:
        if name not in sources:
            if importlib.util.find_spec(f"{package}.{name}") is not None:
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sources[name]), name)
        vars(importlib.import_module(package))[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(public))

    return __getattr__, __dir__
