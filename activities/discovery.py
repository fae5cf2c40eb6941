"""Finding activity classes: the only way a name becomes a class (invariant 8).

Names that arrive in definitions and messages are looked up in the mapping built
here, never handed to ``importlib``: only the configured packages are imported,
and only ``BaseActivity`` subclasses defined in them are found.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from activities.base import BaseActivity
from flow.errors import ConfigurationError, UnknownActivity

BUILTIN_PACKAGE = "activities"


def discover(packages: Iterable[str] = ()) -> dict[str, type[BaseActivity]]:
    """Import ``activities`` and ``packages`` (with their submodules); map class names to classes."""
    roots = [BUILTIN_PACKAGE, *packages]
    for root in roots:
        try:
            module = importlib.import_module(root)
        except ImportError as e:
            raise ConfigurationError(f"FLOW_ACTIVITY_PACKAGES names {root!r}, which cannot be imported: {e}") from e
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=root + "."):
            importlib.import_module(info.name)
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


def resolve(classes: dict[str, type[BaseActivity]], name: str) -> type[BaseActivity]:
    """The discovered class called ``name``, or :class:`UnknownActivity`."""
    try:
        return classes[name]
    except KeyError:
        raise UnknownActivity(f"no activity class named {name!r} was discovered") from None


def _subclasses(cls: type) -> list[type]:
    result = []
    for sub in cls.__subclasses__():
        result.append(sub)
        result.extend(_subclasses(sub))
    return result
