"""Example networks shipped with the package (formal-net/1 JSON).

Each file carries a ``description``; they are the named cases of
docs/theory.md sections 4 and 5 that dense layers can express, plus small demos.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from formal.core.network import Network
from formal.errors import InvalidArgument
from formal.io.formalnet import load


def example_names() -> list[str]:
    """The names of the shipped examples (file names without ``.json``), sorted."""
    return sorted(
        p.name[: -len(".json")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )


def example_path(name: str) -> Path:
    """The path of the shipped example ``name`` (InvalidArgument for an unknown name)."""
    if name not in example_names():
        raise InvalidArgument(f"expected an example ({', '.join(example_names())}), got {name!r}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.json")))


def load_example(name: str) -> Network:
    """The shipped example ``name`` loaded as a network."""
    return load(example_path(name))


__all__ = ["example_names", "example_path", "load_example"]
