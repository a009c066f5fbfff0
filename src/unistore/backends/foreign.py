"""ForeignBackend: a unistore Backend around any object with borgstore's backend methods.

``Store(backend=x)`` accepts a borgstore backend (or anything with ``create destroy open close mkdir
rmdir info load store delete move list``); everything unistore adds on top (recursive listing,
streaming, bulk, stat, ...) then runs the generic Backend code over those methods. ``hash``,
``quota``, ``gather`` and ``defrag`` use the foreign backend's own where it has them. Its
exceptions are turned into unistore's by name (borgstore's names are unistore's names).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .. import errors
from .base import Backend, ItemInfo, Value

T = TypeVar("T")
PRIMITIVES = ("create", "destroy", "open", "close", "mkdir", "rmdir", "info", "load", "store", "delete", "move", "list")


def looks_like_backend(obj: object) -> bool:
    return all(callable(getattr(obj, m, None)) for m in PRIMITIVES)


def _translate(err: Exception) -> Exception:
    cls = getattr(errors, type(err).__name__, None)
    if isinstance(cls, type) and issubclass(cls, errors.UnistoreError) and not isinstance(err, errors.UnistoreError):
        return cls(*err.args)
    return err


class ForeignBackend(Backend):
    """Adapts ``foreign`` (borgstore's backend interface) to unistore's Backend."""

    def __init__(self, foreign: Any) -> None:
        self.foreign = foreign

    @property  # type: ignore[override]
    def precreate_dirs(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.foreign, "precreate_dirs", False))

    def __repr__(self) -> str:
        return f"<ForeignBackend {type(self.foreign).__name__}>"

    @property  # type: ignore[override]
    def opened(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.foreign, "opened", True))

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except errors.UnistoreError:
            raise
        except Exception as err:
            translated = _translate(err)
            if translated is err:
                raise
            raise translated from err

    def create(self) -> None:
        self._call(self.foreign.create)

    def destroy(self) -> None:
        self._call(self.foreign.destroy)

    def open(self) -> None:
        self._call(self.foreign.open)

    def close(self) -> None:
        self._call(self.foreign.close)

    def mkdir(self, name: str) -> None:
        self._call(lambda: self.foreign.mkdir(name))

    def rmdir(self, name: str) -> None:
        self._call(lambda: self.foreign.rmdir(name))

    def info(self, name: str) -> ItemInfo:
        i = self._call(lambda: self.foreign.info(name))
        return ItemInfo(i.name, i.exists, i.size, i.directory, i.atime, i.mtime)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        return self._call(lambda: self.foreign.load(name, size=size, offset=offset))  # type: ignore[no-any-return]

    def store(self, name: str, value: Value) -> None:
        self._call(lambda: self.foreign.store(name, value))

    def delete(self, name: str) -> None:
        self._call(lambda: self.foreign.delete(name))

    def move(self, curr_name: str, new_name: str) -> None:
        self._call(lambda: self.foreign.move(curr_name, new_name))

    def list(self, name: str) -> Iterator[ItemInfo]:
        items = self._call(lambda: list(self.foreign.list(name)))
        return iter([ItemInfo(i.name, i.exists, i.size, i.directory, i.atime, i.mtime) for i in items])

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        if hasattr(self.foreign, "hash"):
            return self._call(lambda: self.foreign.hash(name, algorithm=algorithm))  # type: ignore[no-any-return]
        return super().hash(name, algorithm)

    def quota(self) -> dict[str, int]:
        if hasattr(self.foreign, "quota"):
            return dict(self._call(self.foreign.quota))
        return super().quota()

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        if hasattr(self.foreign, "gather"):
            ranges = list(sources)
            return self._call(lambda: self.foreign.gather(ranges))  # type: ignore[no-any-return]
        return super().gather(sources)
