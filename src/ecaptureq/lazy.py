"""Package attributes imported when first used (PEP 562).

For a package whose modules are heavy to import and often not all needed: the TLS capture's (pyelftools,
libbpf's bindings), the fleet's (its collector brings the store and the HTTP decoder). The package lists
its names in ``__all__`` and imports them under ``TYPE_CHECKING`` for the type checker, as usual; at run
time its ``__getattr__`` finds each in its modules the first time it is asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Sequence


def lazy_attributes(package: str, modules: Sequence[str], names: Collection[str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: each of ``names`` is looked up in its ``modules``, in
    order (the lightest first: looking imports each one it passes), and kept in the package once found.
    Any other name is not the package's: ``from package import submodule`` then imports the submodule."""

    def __getattr__(name: str) -> object:
        if name in names:
            namespace = vars(sys.modules[package])
            for module in modules:
                found = vars(importlib.import_module(f"{package}.{module}"))
                if name in found:
                    namespace[name] = found[name]
                    return found[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
