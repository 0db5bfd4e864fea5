"""The rules every exercise check follows: a registry of tasks, hints, and safe calls of student code.

A task is registered by a lesson's checks module (``lessonNN.py``) with :func:`task`::

    @task("01.3", points=2, answer="tile_position", title="Where channel k sits in a tiled grid")
    def _(tile_position):
        ...                               # raise Hint("...") when something is not right yet

The decorated function receives the student's object and returns nothing when the answer is right.
A task that asks the student to write something coursekit provides names it in ``from_scratch``
(``from_scratch=("metrics.rank_correlation",)``, relative to the package): an answer that calls
it while being checked, however it was imported, earns 0 with that reason (:class:`CallWatch`).
It raises :class:`Hint` with a message that says what to look at (a shape, a range, a behaviour),
never the solution. Calls of student code go through :func:`call`, which turns any exception the
student's code raises into a Hint; any other exception is a bug in the check itself.

This module imports no TensorFlow: the grader reads the task table without loading it. Lesson
modules import Keras and other coursekit modules inside their check functions, with relative
imports only (``from .. import features``), so that the grader can run a private copy of them.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable

# The names of lessons and tasks, parsed here and nowhere else: a lesson is "NN", a task "NN.k",
# a notebook of lesson NN is named "NN_<title>.ipynb", and a check cell reads check("NN.k", answer).
TASK_ID = re.compile(r"^(\d\d)\.(\d+)$")
LESSON_ID = re.compile(r"^\d\d$")
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](?P<task>(?P<lesson>\d\d)\.\d+)["']\s*,\s*(?P<answer>[A-Za-z_]\w*)\s*\)""")
_LESSON_FILE = re.compile(r"^(\d\d)_")


def lesson_of_file_name(name: str) -> str | None:
    """``"NN"`` for a file named ``NN_<anything>``, else None."""
    match = _LESSON_FILE.match(name)
    return match.group(1) if match else None


class Hint(Exception):
    """A check found something not right yet; the message tells the student what to look at."""


class CheckBug(Exception):
    """The check itself did something the grading protocol cannot do (pass an object that cannot
    reach the student's kernel, say): a bug to report, never the student's fault."""


@dataclass(frozen=True)
class Task:
    id: str                            # "NN.k": lesson NN, task k
    points: int
    answer: str                        # the name the notebook gives the student's object
    title: str
    run: Callable[[Any], None]         # raises Hint when the answer is not right yet
    from_scratch: tuple[str, ...] = ()  # coursekit functions ("metrics.rank_correlation") not to call

    @property
    def lesson(self) -> str:
        return self.id[:2]


@dataclass(frozen=True)
class Outcome:
    task: str
    passed: bool
    points: int                        # points earned: all of the task's points or none
    max_points: int
    message: str
    check_error: bool = False          # the check itself failed (a bug to report), not the answer

    def text(self) -> str:
        mark = "✓" if self.passed else "✗"
        verdict = "passed" if self.passed else "not yet"
        return f"{mark} {self.task} {verdict} ({self.points}/{self.max_points} points): {self.message}"


TASKS: dict[str, Task] = {}


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()  # stands for an answer the notebook never defined


def task(task_id: str, *, points: int, answer: str, title: str, from_scratch: tuple[str, ...] = ()):
    """Register the decorated function as the check of ``task_id`` (see the module docstring)."""
    if not TASK_ID.match(task_id):
        raise ValueError(f"Task ids look like '01.2' (lesson 01, task 2); got {task_id!r}.")
    if not answer.isidentifier():
        raise ValueError(f"answer must be the Python name of the student's object; got {answer!r}.")
    if points < 1:
        raise ValueError(f"Task {task_id} needs at least 1 point; got {points}.")

    def register(function: Callable[[Any], None]) -> Callable[[Any], None]:
        if task_id in TASKS:
            raise ValueError(f"Task {task_id} is registered twice.")
        TASKS[task_id] = Task(task_id, int(points), answer, title, function, tuple(from_scratch))
        return function

    return register


def evaluate(task_: Task, value: Any) -> Outcome:
    """Run one task's check on ``value``; never raises (a broken check is reported as such)."""
    if value is MISSING:
        return Outcome(task_.id, False, 0, task_.points,
                       f"the notebook defines no `{task_.answer}`. Run the task's cell, and keep "
                       f"the name `{task_.answer}` that the task gives.")
    _current.from_scratch = task_.from_scratch
    try:
        task_.run(value)
    except Hint as hint:
        return Outcome(task_.id, False, 0, task_.points, str(hint))
    except Exception as error:  # a bug in the check, not in the answer
        return Outcome(task_.id, False, 0, task_.points,
                       f"the check itself failed ({type(error).__name__}: {error}). "
                       "This is not your fault: tell your instructor.", check_error=True)
    finally:
        _current.from_scratch = ()
    return Outcome(task_.id, True, task_.points, task_.points, "well done.")


# ----------------------------------------------------------------------------- from-scratch tasks

_current = threading.local()   # the from_scratch names of the task being checked in this thread


def forbidden_now() -> tuple[str, ...]:
    """The coursekit functions the answer being checked (in this thread) must not call."""
    return getattr(_current, "from_scratch", ())


class CallWatch:
    """``with CallWatch(names) as watch:`` records in ``watch.used`` which of coursekit's functions
    ``names`` (relative dotted names) were called in the block, in this thread, however imported.

    It compares code objects, so a renamed import is caught and a copy of the source is not.
    """

    def __init__(self, names):
        package = __name__.rsplit(".", 2)[0]
        self.codes, self.used = {}, []
        for name in names:
            module, _, attribute = name.rpartition(".")
            function = inspect.unwrap(getattr(importlib.import_module(f"{package}.{module}"), attribute))
            self.codes[function.__code__] = f"{package}.{name}"

    def _profile(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            name = self.codes[frame.f_code]
            if name not in self.used:
                self.used.append(name)

    def __enter__(self):
        self.previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)
        return False


class UsedForbidden(Exception):
    """Raised by a stand-in whose function, in another process, called a forbidden function."""

    def __init__(self, used):
        super().__init__(", ".join(used))
        self.used = list(used)


def from_scratch_hint(what: str, used) -> Hint:
    names = ", ".join(f"`{name}`" for name in used)
    return Hint(f"{what} calls coursekit's own {names}. This task asks you to write it yourself, so "
                "it earns 0 points this way: replace that call with your own code.")


# ----------------------------------------------------------------------------- helpers for checks

def call(function: Callable, *args, what: str = "your function", **kwargs):
    """Call student code; any exception it raises becomes a :class:`Hint` that names it.

    While a from-scratch task is checked, a call of a function it forbids is a Hint too (a
    stand-in for a function in another process does that watch there: ``remote_call``).
    """
    forbidden = forbidden_now()
    watched = forbidden and not getattr(function, "remote_call", False)
    try:
        with CallWatch(forbidden) if watched else nullcontext() as watch:
            result = function(*args, **kwargs)
    except UsedForbidden as forbidden:
        raise from_scratch_hint(what, forbidden.used) from None
    except NotImplementedError:
        raise Hint(f"{what} still raises NotImplementedError: replace `# YOUR CODE HERE` and "
                   "`raise NotImplementedError()` with your code, run that cell, then this one.") from None
    except (Hint, CheckBug):
        raise
    except Exception as error:
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise Hint(f"{what} raised {type(error).__name__}" + (f": {message}" if message else "")
                   + ". Try it on a small example to see where.") from None
    if watched and watch.used:
        raise from_scratch_hint(what, watch.used)
    return result


@contextmanager
def untraced():
    """``with untraced():`` runs coursekit's compiled TensorFlow steps eagerly in the block.

    coursekit compiles one step per model (``cam``, ``saliency``, ``filters``, ``metrics``), and a
    check draws a new model every time: traced, each would be traced once, and TensorFlow warns of
    "retracing" after a few checks in one kernel. The check's models are tiny, so eager costs
    nothing. Only the check's own reference computations go in the block, never the student's code.
    """
    import tensorflow as tf
    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


def require_callable(value: Any, name: str) -> None:
    if not callable(value):
        raise Hint(f"check needs your function `{name}` itself (write `{name}`, not `{name}(...)`); "
                   f"got an object of type {type(value).__name__}.")


def fresh_rng():
    """An unseeded numpy Generator: new inputs at every check, so a hard-coded answer fails."""
    import numpy as np
    return np.random.default_rng()


def as_numbers(value: Any, what: str, expected: str = "a tensor or an array"):
    """``value`` as a float64 numpy array, or a :class:`Hint` saying what came back instead."""
    import numpy as np
    if value is None:
        raise Hint(f"{what} returned None: does it end with a `return`?")
    try:
        return np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        raise Hint(f"{what} should return numbers ({expected}); it returned a "
                   f"{type(value).__name__}.") from None


def close(got, expected, tolerance: float = 1e-4, floor: float = 1e-12) -> bool:
    """Same shape, and every entry within ``tolerance`` times the largest ``|expected|`` (at least
    ``floor``): equality up to float32 rounding, whatever the scale of the numbers."""
    import numpy as np
    got, expected = np.asarray(got, dtype="float64"), np.asarray(expected, dtype="float64")
    scale = max(float(np.abs(expected).max()) if expected.size else 0.0, floor)
    return got.shape == expected.shape and bool(np.all(np.abs(got - expected) <= tolerance * scale))


def as_array(value: Any):
    """``value`` as a numpy array when it is an array of any kind (numpy, a TensorFlow tensor, any
    object numpy can read as one); anything else unchanged, for the check to describe."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__array__") and hasattr(value, "shape") and hasattr(value, "dtype"):
        try:
            return np.asarray(value)
        except (TypeError, ValueError):
            return value
    return value


def as_int_tuple(value: Any, length: int, what: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``length`` Python ints (a tuple, a list, a 1-D array or tensor;
    numpy integers and integral floats accepted)."""
    import numbers

    import numpy as np
    value = as_array(value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iuf":
        value = tuple(value.tolist())
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise Hint(f"{what} should be a tuple of {length} integers; got {_describe(value)}.")
    numbers_out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise Hint(f"{what} should hold {length} integers; one of them is a {type(item).__name__}.")
        if float(item) != int(float(item)):
            raise Hint(f"{what} should hold whole numbers of pixels; got {float(item)}.")
        numbers_out.append(int(float(item)))
    return tuple(numbers_out)


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def scaled_maps_match(got, positive, tolerance: float = 1e-3, epsilon: float = 1e-5) -> bool:
    """Whether ``got`` is ``positive`` ``(N, h, w)`` (>= 0) with each map divided by its own maximum
    (an all-zero map left at 0): exactly, or by its maximum plus one small number, the usual guard
    against 0 / 0 (``max + 1e-7``), up to ``epsilon`` whatever the scale of the maps.

    The guard's number is read off the map with the largest maximum and must then fit every map,
    so dividing by the batch's maximum or by anything else is not mistaken for it.
    """
    import numpy as np
    got, positive = np.asarray(got, dtype="float64"), np.asarray(positive, dtype="float64")
    if got.shape != positive.shape or not np.all(np.isfinite(got)):
        return False
    peaks = positive.reshape(len(positive), -1).max(axis=1) if positive.size else np.zeros(len(positive))
    if close(got, positive / np.where(peaks > 0, peaks, 1).reshape(-1, 1, 1), tolerance):
        return True
    largest = int(np.argmax(peaks))
    got_peak = float(got[largest].max())
    if peaks[largest] <= 0 or got_peak <= 0:
        return False
    guard = max(float(peaks[largest]) / got_peak - float(peaks[largest]), 0.0)
    guarded = peaks + guard   # read off one map, it must fit all of them (an all-zero map stays 0)
    return guard <= epsilon * 1.01 and close(got, positive / np.where(guarded > 0, guarded, 1).reshape(-1, 1, 1),
                                             tolerance)


# ----------------------------------------------------------------------------- multiple choice

def choice_key(task_id: str, letters) -> str:
    """The stored key of a multiple-choice answer (a hash, so the key does not read as the answer)."""
    return hashlib.sha256(f"{task_id}|{','.join(sorted(letters))}".encode()).hexdigest()


def choice_task(task_id: str, *, points: int, answer: str, title: str, options: str,
                key: str, hint: str) -> None:
    """Register a "select every true statement" question with options ``a``, ``b``, ...

    The student's answer is a set (or list, tuple, string) of option letters; ``key`` is
    :func:`choice_key` of the right set. A wrong selection gets ``hint``, the same whatever is
    wrong, so the feedback does not point at the wrong option.
    """
    allowed = set(options)

    @task(task_id, points=points, answer=answer, title=title)
    def _(value):
        if isinstance(value, str):
            words = value.replace(",", " ").split()
            if any(len(word) > 1 for word in words):
                letters = [letter for letter in "".join(words).lower() if letter in allowed][:len(allowed)] or ["a", "c"]
                example = "{" + ", ".join(f"'{letter}'" for letter in letters) + "}"
                raise Hint(f"your answer is one string of {len(value)} characters; give a set of letters, "
                           f"one string per letter, such as {example}.")
            value = words
        if not isinstance(value, (set, frozenset, list, tuple)):
            raise Hint(f"give a set of letters such as {{'a', 'c'}}; got a {type(value).__name__}.")
        if any(type(letter) is not str for letter in value):
            raise Hint("every element of your answer should be a letter in quotes, such as 'a'.")
        letters = {letter.strip().lower() for letter in value}
        unknown = letters - allowed
        if unknown:
            raise Hint(f"{sorted(unknown)} are not options; choose among {sorted(allowed)}.")
        if not letters:
            raise Hint("no statement selected yet: put the letters of every true statement in the set.")
        if choice_key(task_id, letters) != key:
            raise Hint(hint)
