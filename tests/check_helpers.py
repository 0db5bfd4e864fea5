"""What the tests of every lesson's exercise checks share: how to run a check, and answers that
must never pass (a memorised one, an object equal to everything)."""
from __future__ import annotations

import hashlib

import numpy as np

from coursekit import checks
from coursekit.checks import core


def outcome(task_id: str, value) -> core.Outcome:
    """The outcome of checking ``value`` as the answer of ``task_id``, without printing."""
    return core.evaluate(checks.find(task_id), value)


def is_choice_task(task: core.Task) -> bool:
    """Whether ``task`` is a "select every true statement" question (made by ``choice_task``)."""
    return task.run.__qualname__.startswith("choice_task.")


class Memorised:
    """A hard-coded answer: it answers each call with what ``reference`` returned for the same
    arguments while ``recording`` (one check run), and with ``unknown`` (default: the first answer
    it recorded) for anything else. It knows every case of one check run, none of the next.

    Arguments are compared by their numbers; callables (models, functions) are left out of the
    comparison, since a check makes new ones every time.
    """

    def __init__(self, reference, unknown=None):
        self.reference, self.unknown, self.table, self.recording = reference, unknown, {}, True

    def __call__(self, *args):
        key = hashlib.sha256(b"|".join(np.asarray(a).tobytes() for a in args if not callable(a))).hexdigest()
        if self.recording:
            self.table[key] = self.reference(*args)
        if key in self.table:
            return self.table[key]
        return self.unknown if self.unknown is not None else next(iter(self.table.values()))


class AlwaysEqual:
    """An object equal to everything, returning itself when called: it must pass no check."""

    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0

    def __call__(self, *args, **kwargs):
        return self
