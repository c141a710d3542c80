"""The one registry of the zoo and its factory, `create(name, **overrides)`.

A family registers a builder under a name pattern. Fixed names (``"svgg"``) match
themselves; parametric names put integer fields in braces (``"wrn-{depth}-{width}"``)
which are parsed from the requested name and passed to the builder. `names()` lists
every fixed name and each family's listed examples.
"""

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class Family:
    pattern: str
    regex: re.Pattern
    builder: Callable[..., keras.Model]
    examples: tuple[str, ...]

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.builder) or ""
        return doc.splitlines()[0] if doc else ""


_FAMILIES: dict[str, Family] = {}


def _compile_pattern(pattern: str) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = ""
    for i, part in enumerate(parts):
        regex += re.escape(part) if i % 2 == 0 else rf"(?P<{part}>\d+)"
    return re.compile(rf"^{regex}$")


def register(pattern: str, examples: Sequence[str] = ()):
    """Register a model builder under `pattern` (decorator).

    The builder takes the pattern's integer fields as keyword arguments, then its
    own keyword options (``num_classes``, ``input_shape``, ...).
    """

    def decorator(builder):
        if pattern in _FAMILIES:
            raise ValueError(f"A model family is already registered as '{pattern}'.")
        regex = _compile_pattern(pattern)
        listed = tuple(examples) or (pattern,)
        for name in listed:
            if not regex.match(name):
                raise ValueError(f"Example '{name}' does not match its pattern '{pattern}'.")
        _FAMILIES[pattern] = Family(pattern, regex, builder, listed)
        return builder

    return decorator


def names() -> list[str]:
    """Every listed model name, sorted."""
    return sorted(name for family in _FAMILIES.values() for name in family.examples)


def patterns() -> list[str]:
    """Every registered name pattern, e.g. ``wrn-{depth}-{width}``."""
    return sorted(_FAMILIES)


def _find(name: str) -> tuple[Family, dict[str, int]]:
    if not isinstance(name, str):
        raise ValueError(f"A model name must be a string. Received: {name!r}")
    for family in _FAMILIES.values():
        match = family.regex.match(name.strip().lower())
        if match:
            return family, {k: int(v) for k, v in match.groupdict().items()}
    raise ValueError(
        f"Unknown model '{name}'. Valid names: {', '.join(names())}; "
        f"name patterns: {', '.join(p for p in patterns() if '{' in p)}."
    )


def describe(name: str) -> str:
    """The first docstring line of the family `name` belongs to."""
    return _find(name)[0].summary


def family(name: str) -> str:
    """The name pattern of the family `name` belongs to, e.g. ``wrn-{depth}-{width}``."""
    return _find(name)[0].pattern


def defaults(name: str) -> dict:
    """The builder's default ``input_shape`` and ``num_classes`` (those it has) for `name`."""
    params = inspect.signature(_find(name)[0].builder).parameters
    return {k: params[k].default for k in ("input_shape", "num_classes")
            if k in params and params[k].default is not inspect.Parameter.empty}


def create(name: str, **overrides) -> keras.Model:
    """Build the model `name` (any listed name or any name matching a pattern).

    `overrides` are the builder's keyword options, e.g. ``num_classes=10``,
    ``input_shape=(32, 32, 3)``, ``dropout=0.3``. Unknown options raise a
    `ValueError` listing the valid ones.
    """
    family, fields = _find(name)
    params = inspect.signature(family.builder).parameters
    valid = [p for p in params if p not in fields and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in overrides if k not in valid]
    if unknown and not accepts_any:
        raise ValueError(
            f"Unknown option(s) {unknown} for model '{name}'. Valid options: {', '.join(valid)}."
        )
    clash = [k for k in overrides if k in fields]
    if clash:
        raise ValueError(f"Option(s) {clash} are set by the name '{name}' and cannot be overridden.")
    return family.builder(**fields, **overrides)
