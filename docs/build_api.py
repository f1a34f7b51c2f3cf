"""Build the HTML API reference of ``safecircuits`` from its docstrings with pdoc (``make docs``).

    python docs/build_api.py [OUTPUT_DIR]        # default: docs/api

Runs offline and on a CPU: pdoc imports every module, and no module downloads a model or touches
a GPU at import time. Two things make pdoc see the whole package:

* the package ``__init__`` files export their names lazily (``safecircuits._lazy``: a module
  ``__getattr__``), so those names are not in the module's ``__dict__`` where pdoc looks; they are
  resolved here first;
* pdoc lists only the submodules named in a package's ``__all__``; the public submodules are
  added to it here, in this process only (the package itself is not changed).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "safecircuits"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the reference never needs an accelerator


def module_names() -> list[str]:
    """Every public module of the package (no path part starting with an underscore, except __init__)."""
    names = []
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        names.append(".".join(parts))
    return names


def prepare(names: list[str]) -> None:
    """Import every module, resolve lazy exports and list public submodules in ``__all__``."""
    modules = {n: importlib.import_module(n) for n in names}
    for name, mod in modules.items():
        if not hasattr(mod, "__path__"):
            continue
        exported = list(getattr(mod, "__all__", []))
        for attr in exported:
            if attr not in mod.__dict__:
                value = getattr(mod, attr)
                if not isinstance(value, types.ModuleType):
                    mod.__dict__[attr] = value
        subs = [n.rpartition(".")[2] for n in names if n.rpartition(".")[0] == name]
        if "__all__" in mod.__dict__:
            mod.__all__ = exported + [s for s in subs if s not in exported]


def _rst_literal_blocks() -> None:
    """reST's ``text::`` (a literal block follows) would show its ``::`` in pdoc's Markdown: render ``text:``."""
    import pdoc.docstrings

    rst = pdoc.docstrings.rst

    def patched(contents: str, source_file: Path | None) -> str:
        return rst(re.sub(r"::[ \t]*\n", ":\n", contents), source_file)

    pdoc.docstrings.rst = patched


def main(argv: list[str]) -> int:
    import pdoc
    import pdoc.render

    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "api"
    sys.path.insert(0, str(ROOT))
    names = module_names()
    prepare(names)
    _rst_literal_blocks()
    pdoc.render.configure(docformat="restructuredtext", search=True, show_source=True)
    pdoc.pdoc(PACKAGE, output_directory=out)  # pdoc walks the submodules listed in __all__
    print(f"API reference of {len(names)} modules: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
