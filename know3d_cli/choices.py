"""`Choice`: the base of every setting whose value is one of a fixed set of strings.

A foundation module (it imports nothing from know3d_cli), shared by the TRELLIS.2 library and the app, so that each
set of choices is one Enum, defined once, used as the type of its config field, and validated by OmegaConf when the
configuration is composed; code past that point receives members, never raw strings.

Members are named exactly like their values: OmegaConf looks a config string up by member *name* and prints members
by name (`config show`). Values that are not identifiers (`"512"`) are declared with the functional API,
`Choice("PipelineType", ["ss", "512", ...])`. YAML and Hydra overrides read `512` as an integer; such a value is
looked up by its string.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string-valued Enum for configuration choices (see the module docstring)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return cls._value2member_map_.get(str(value))  # type: ignore[return-value]
        return None

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every allowed value, in declaration order."""
        return tuple(member.value for member in cls)


__all__ = ["Choice"]
