"""Sub-models built once per (model, key) and dropped when the model is garbage-collected."""
from __future__ import annotations

import weakref
from typing import Callable, TypeVar

T = TypeVar("T")
_CACHE: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def per_model(model, key, build: Callable[[], T]) -> T:
    """``build()`` the first time ``(model, key)`` is asked for, the same object afterwards."""
    entries = _CACHE.setdefault(model, {})
    if key not in entries:
        entries[key] = build()
    return entries[key]
