"""The plain-data format between the grader and a student's kernel, read and written on both sides.

A value crosses as JSON text: numbers, strings, booleans and None as themselves; lists, tuples,
sets and dicts (string keys) as tagged lists; numpy arrays and TensorFlow tensors as
``{"$": "array", "dtype", "shape", "data"}`` with the bytes in base64, little-endian (an array of
either byte order arrives equal, and a 0-d array stays 0-d); Keras models as a
``.keras`` file in the submission's exchange folder. Everything else is named, never sent: a
function becomes a handle that can be called (``"function"``), any other object its type name
(``"object"``). :func:`decode` is the grader's side of the format: it builds numpy arrays and
Python containers from the text and refuses anything else (no object of the student's reaches
the grader's process), with a size and depth limit.

This module imports neither TensorFlow nor Keras: the kernel side imports them only when a
value needs them.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np

ARRAY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                          "float16", "float32", "float64"})
MAX_DEPTH = 32
MAX_ITEMS = 1_000_000          # elements of containers in one value
MAX_TEXT = 200_000_000         # characters of one encoded value (about 150 MB of array data)


class WireError(ValueError):
    """A value sent by the kernel is not in the format; the message says what was wrong."""


def encode_array(array: np.ndarray, tensor: bool = False) -> dict:
    """``array`` (any shape, 0-d included; a dtype in :data:`ARRAY_DTYPES`, either byte order) as a
    tagged dict of its bytes in little-endian order, base64-encoded."""
    array = np.asarray(array)
    if array.dtype.name not in ARRAY_DTYPES:
        raise TypeError(f"arrays of dtype {array.dtype} cannot be sent; use numbers (int, float or bool)")
    little = array.astype(array.dtype.newbyteorder("<"), order="C", copy=False)
    return {"$": "array", "dtype": array.dtype.name, "shape": list(array.shape), "tensor": bool(tensor),
            "data": base64.b64encode(little.tobytes()).decode("ascii")}


def dumps(tree) -> str:
    return json.dumps(tree, allow_nan=True, separators=(",", ":"))


def loads(text: str):
    """JSON text as a tree (the kernel's answer: at most :data:`MAX_TEXT` characters)."""
    if not isinstance(text, str):
        raise WireError(f"expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise WireError(f"{len(text) / 1e6:.0f} MB is more than the grader reads back ({MAX_TEXT / 1e6:.0f} MB)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WireError(f"not valid JSON ({str(error)[:100]})") from None


def decode(tree, hooks: dict, depth: int = 0, budget: list | None = None):
    """The plain value ``tree`` stands for; :class:`WireError` for anything not in the format.

    ``hooks`` maps the tags that need the grader's context ("keras_model", "keras_layer",
    "function", "object", "argument") to functions of the tagged dict.
    """
    budget = [MAX_ITEMS] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError(f"more than {MAX_ITEMS} values in one answer")
    if depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    if tree is None or type(tree) in (bool, str):
        return tree
    if type(tree) is int:
        return tree
    if type(tree) is float:
        return tree
    if type(tree) is not dict or not isinstance(tree.get("$"), str):
        raise WireError(f"unexpected {type(tree).__name__} in the answer's encoding")
    tag = tree["$"]
    if tag in ("list", "tuple", "set", "dict"):
        items = tree.get("items")
        if type(items) is not list:
            raise WireError(f"a {tag} without items")
        if tag == "dict":
            pairs = []
            for pair in items:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                    raise WireError("a dict entry is not a (string key, value) pair")
                pairs.append((pair[0], decode(pair[1], hooks, depth + 1, budget)))
            return dict(pairs)
        values = [decode(item, hooks, depth + 1, budget) for item in items]
        if tag == "set":
            try:
                return set(values)
            except TypeError:
                raise WireError("a set holds values that cannot be in a set") from None
        return tuple(values) if tag == "tuple" else values
    if tag == "array":
        return decode_array(tree)
    if tag == "float":
        value = tree.get("value")
        if value not in ("nan", "inf", "-inf"):
            raise WireError("unknown special float")
        return float(value)
    if tag in hooks:
        return hooks[tag](tree)
    raise WireError(f"unknown kind of value {tag[:40]!r}")


def decode_array(tree: dict) -> np.ndarray:
    dtype, shape, data = tree.get("dtype"), tree.get("shape"), tree.get("data")
    if dtype not in ARRAY_DTYPES:
        raise WireError(f"arrays of dtype {str(dtype)[:40]} are not accepted")
    if type(shape) is not list or len(shape) > 32 or any(type(n) is not int or n < 0 for n in shape):
        raise WireError("an array's shape is not a list of sizes")
    if type(data) is not str:
        raise WireError("an array without data")
    count = math.prod(shape)
    itemsize = np.dtype(dtype).itemsize
    if count * itemsize * 4 > (len(data) + 3) * 3 + 8:  # base64: 4 characters per 3 bytes
        raise WireError("an array's data is shorter than its shape says")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WireError("an array's data is not base64") from None
    if len(raw) != count * itemsize:
        raise WireError(f"an array of shape {tuple(shape)} and dtype {dtype} needs {count * itemsize} bytes, "
                        f"got {len(raw)}")
    little = np.dtype(dtype).newbyteorder("<")   # the order encode_array sends, whatever the machine's
    return np.frombuffer(raw, dtype=little).reshape(shape).astype(np.dtype(dtype))
