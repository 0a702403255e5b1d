"""Example networks shipped with the package (formal-net/1 JSON).

Each file carries a ``description``; they are the named cases of THEORY
sections 4 and 4b that dense layers can express, plus small demos.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from formal.errors import InvalidArgument


def example_names() -> list[str]:
    return sorted(
        p.name[: -len(".json")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )


def example_path(name: str) -> Path:
    if name not in example_names():
        raise InvalidArgument(f"expected an example ({', '.join(example_names())}), got {name!r}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.json")))


def load_example(name: str):
    from formal.io.formalnet import load

    return load(example_path(name))


__all__ = ["example_names", "example_path", "load_example"]
