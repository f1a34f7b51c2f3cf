"""Lazy re-exports for package ``__init__`` modules.

``import safecircuits`` and the CLI's start-up import package ``__init__`` files; importing torch,
TransformerLens and SAELens there would cost seconds before ``--help`` prints. Each package lists
its public names and the module that defines them; a name is imported on first attribute access.
A name whose module is ``<package>.<name>`` is that submodule itself (``sc.features``); a value
``"module:attr"`` exports ``attr`` of ``module`` under another name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``__getattr__`` and ``__all__`` for `package`, given ``{name: defining module}``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            target, _, attr = exports[name].partition(":")
            module = importlib.import_module(target)
            return module if target == f"{package}.{name}" and not attr else getattr(module, attr or name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
