"""The levers this build implements, in the fixed order of DESIGN.md section 1.

An explicit list: a lever module that fails to import is an ImportError, never skipped. Ids that
DESIGN.md names but this build does not implement yet are valid to ask for (`--no-lever`) and
reported as skipped.
"""

from __future__ import annotations

from advisor.errors import AdvisorError
from advisor.levers.base import Lever
from advisor.levers.batching import BatchingLever
from advisor.levers.caching import CachingLever
from advisor.levers.output_caps import OutputCapsLever
from advisor.levers.tiering import TieringLever
from advisor.levers.trimming import TrimmingLever

# tiering -> trimming and output caps -> caching -> batching
LEVERS: tuple[type[Lever], ...] = (
    TieringLever,
    TrimmingLever,
    OutputCapsLever,
    CachingLever,
    BatchingLever,
)

# DESIGN.md section 1 ids, in order; those without a class in LEVERS are not built yet
ALL_IDS = ("tiering", "trimming", "output_caps", "caching", "batching")
BUILT = tuple(lever.id for lever in LEVERS)


def select(ids: tuple[str, ...] | None = None) -> list[Lever]:
    """Fresh instances of the levers to run, in registry order (`ids` None: all built)."""
    wanted = validate(ids) if ids is not None else BUILT
    return [lever() for lever in LEVERS if lever.id in wanted]


def validate(ids: tuple[str, ...]) -> tuple[str, ...]:
    """`ids` checked against DESIGN.md's levers; an unknown id is a usage error naming them."""
    unknown = [i for i in ids if i not in ALL_IDS]
    if unknown:
        raise AdvisorError(
            f"unknown lever {', '.join(repr(i) for i in unknown)}",
            hint=f"levers: {', '.join(ALL_IDS)}",
        )
    return tuple(i for i in ALL_IDS if i in ids)


def skipped(ids: tuple[str, ...] | None) -> list[str]:
    """The DESIGN.md levers that will not run: switched off, or not built yet."""
    ran = set(BUILT if ids is None else validate(ids)) & set(BUILT)
    return [i for i in ALL_IDS if i not in ran]
