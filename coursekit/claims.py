"""Lessons say what they show: a sentence's claim, checked against the numbers a cell computed.

A lesson's text that states a number or a comparison ("the two maps correlate weakly", "most of
the mass is on the patch") is followed by ``claim(...)``. When the claim stops holding (another
model, another profile, a changed example) the notebook fails with the sentence named, so the
maintainer rewrites the sentence or picks an example that shows it, instead of students reading
a paragraph that its own figure contradicts.

    from coursekit.claims import claim
    claim(correlation < 0.7, "§3: the probability's map differs from the logit's",
          f"correlation of the two maps {correlation:.2f} (the text needs < 0.7)")

With random ImageNet weights (``COURSEKIT_RANDOM_WEIGHTS=1``, used only to time and measure the
quick and full profiles' code where their weights cannot be had) the pictures mean nothing: a
claim that fails there is reported on one line and the notebook goes on.
"""
from __future__ import annotations

from .env import random_weights

CHECK_MARK = "✓ as the text says:"
UNCHECKED_MARK = "(random weights: claim not checked)"


class ClaimError(AssertionError):
    """A sentence of the lesson no longer matches what the cells computed."""


def claim(holds, sentence: str, evidence: str) -> None:
    """Check one sentence of the lesson against the numbers printed beside it.

    ``holds``: the condition that makes the sentence true (a bool, or a numpy bool);
    ``sentence``: where the sentence is and what it says, e.g. ``"§3: the two maps look alike"``;
    ``evidence``: the numbers behind it, as the student should read them (one short line).
    Prints ``✓ as the text says: <evidence>`` when the claim holds; raises ``ClaimError`` naming
    the sentence when it does not (with random weights: prints that it was not checked).
    """
    if not isinstance(sentence, str) or not sentence.strip():
        raise TypeError("claim(holds, sentence, evidence): sentence must say which sentence of the "
                        "lesson this checks, e.g. '§3: the two maps look alike'.")
    if bool(holds):
        print(f"{CHECK_MARK} {evidence}")
        return
    if random_weights():
        print(f"{UNCHECKED_MARK} {evidence}")
        return
    raise ClaimError(
        f"The lesson's text no longer matches its numbers.\n"
        f"  Sentence: {sentence}\n"
        f"  Numbers:  {evidence}\n"
        "Rewrite the sentence so that it follows the numbers, or choose an example that shows it "
        "(and keep this check in step with the sentence).")
