"""Read-only attributes whose getter is C code (`operator.attrgetter`), for the fields the Trio layer reads
on every pump: reading one runs no Python function, as a plain attribute, but it cannot be set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

__all__ = ["ReadOnly"]

T = TypeVar("T")


class ReadOnly(property, Generic[T]):
    # `name = ReadOnly[T](attrgetter("_name"), doc="...")`: a property whose getter is an attrgetter (a
    # dotted path works too: attrgetter("session._renomination")); typed for mypy below as a property of T.

    __doc__ = vars(property)["__doc__"]  # each one's own `doc=` (a class docstring would shadow it)

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: type | None = None) -> ReadOnly[T]: ...
        @overload
        def __get__(self, instance: object, owner: type | None = None) -> T: ...
        def __get__(self, instance: object, owner: type | None = None) -> Any: ...
