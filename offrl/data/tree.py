"""Observations are one array or a dict of arrays; these helpers treat both alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
U = TypeVar("U")


def tree_map(fn: Callable[[T], U], tree: T | dict[str, T]) -> U | dict[str, U]:
    if isinstance(tree, dict):
        return {key: tree_map(fn, value) for key, value in tree.items()}
    return fn(tree)


def tree_map2(fn: Callable[[T, T], U], left: Any, right: Any) -> Any:
    if isinstance(left, dict):
        return {key: tree_map2(fn, left[key], right[key]) for key in left}
    return fn(left, right)


def tree_items(tree: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Leaves with slash-joined names, e.g. ("observations/image", array)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from tree_items(value, f"{prefix}/{key}")
    else:
        yield prefix, tree


def tree_first(tree: Any) -> Any:
    while isinstance(tree, dict):
        tree = next(iter(tree.values()))
    return tree
