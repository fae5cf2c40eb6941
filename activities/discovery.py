"""Finding activity classes: the only way a name becomes a class (docs/design.md, invariant 8).

Names that arrive in definitions and messages are looked up in the mapping built
here, never handed to ``importlib``: only the configured packages are imported,
and only ``BaseActivity`` subclasses defined in them are found.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from activities.base import BaseActivity
from flow.errors import ConfigurationError, UnknownActivity

BUILTIN_PACKAGE = "activities"


def discover(packages: Iterable[str] = ()) -> dict[str, type[BaseActivity]]:
    """Import ``activities`` and ``packages`` (with their submodules); map class names to classes."""
    roots = [BUILTIN_PACKAGE, *packages]
    for root in roots:
        module = _import(root, root)
        # walk_packages imports each subpackage to look inside it; a broken one is
        # reported like any other module of the package.
        walk = pkgutil.walk_packages(getattr(module, "__path__", []), prefix=root + ".", onerror=lambda name: None)
        for info in walk:
            _import(info.name, root)
    found: dict[str, type[BaseActivity]] = {}
    for cls in _subclasses(BaseActivity):
        if any(cls.__module__ == root or cls.__module__.startswith(root + ".") for root in roots):
            previous = found.setdefault(cls.__name__, cls)
            if previous is not cls:
                raise ConfigurationError(
                    f"two activity classes are named {cls.__name__}: "
                    f"{previous.__module__} and {cls.__module__}; rename one"
                )
    return found


def _import(name: str, root: str) -> ModuleType:
    """Import module ``name`` of package ``root``. Any failure is a :class:`ConfigurationError`
    that names the variable and the module: a module that raises while it is imported
    is as unusable as a missing one, whatever it raises."""
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - importing runs arbitrary code: report it, never crash
        if root == BUILTIN_PACKAGE:
            where = f"the built-in activity module {name!r} cannot be imported"
        elif name == root:
            where = f"FLOW_ACTIVITY_PACKAGES names {root!r}, which cannot be imported"
        else:
            where = f"FLOW_ACTIVITY_PACKAGES names {root!r}, whose module {name!r} cannot be imported"
        raise ConfigurationError(f"{where}: {type(e).__name__}: {e}") from e


def resolve(classes: dict[str, type[BaseActivity]], name: str) -> type[BaseActivity]:
    """The discovered class called ``name``, or :class:`UnknownActivity`."""
    try:
        return classes[name]
    except KeyError:
        raise UnknownActivity(f"no activity class named {name!r} was discovered") from None


def _subclasses(cls: type) -> list[type]:
    result: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        result.append(sub)
        result.extend(_subclasses(sub))
    return result
