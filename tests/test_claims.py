"""coursekit.claims: a sentence's check passes quietly with its evidence, or fails naming the sentence."""
import pytest

from coursekit import env
from coursekit.claims import ClaimError, claim


def test_a_claim_that_holds_prints_its_evidence(capsys):
    claim(0.3 < 0.7, "§3: the maps differ", "correlation 0.30")
    assert "✓ as the text says: correlation 0.30" in capsys.readouterr().out


def test_a_claim_that_fails_names_the_sentence_and_the_numbers(monkeypatch):
    monkeypatch.delenv(env.RANDOM_WEIGHTS_VARIABLE, raising=False)
    with pytest.raises(ClaimError) as failure:
        claim(0.95 < 0.7, "§3: the maps differ", "correlation 0.95")
    assert "§3: the maps differ" in str(failure.value) and "correlation 0.95" in str(failure.value)
    assert isinstance(failure.value, AssertionError)


def test_with_random_weights_a_failing_claim_is_reported_not_raised(monkeypatch, capsys):
    monkeypatch.setenv(env.RANDOM_WEIGHTS_VARIABLE, "1")
    claim(False, "§3: the maps differ", "correlation 0.95")
    assert "not checked" in capsys.readouterr().out


def test_a_claim_must_name_its_sentence():
    with pytest.raises(TypeError, match="which sentence"):
        claim(True, "", "x")
