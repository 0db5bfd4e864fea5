"""How often each check test fails when its cases are drawn again: the flakiness of the checks.

    python bench/check_flakiness.py [--rounds 20] [--only WORDS] [test_checks_01 test_checks_05 ...]

Every exercise check draws new random cases each time it runs (`checks.core.fresh_rng`), so a
wrong answer that agrees with the right one on some drawings passes now and then, and a test
that says it fails is flaky. This calls every parametrised case of the check tests ``--rounds``
times in one process (right answers, wrong answers, memorised answers) and prints each case
that failed with its rate; it exits 1 if any did. Run it after changing a check's case drawing.
"""
from __future__ import annotations

import argparse
import collections
import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PARAMETER_SET = type(pytest.param())   # what pytest.param(...) returns

DEFAULT_MODULES = ["test_checks_01", "test_checks_02_04", "test_checks_05", "test_checks_06",
                   "test_checks_07", "test_checks_08"]


def parametrised_cases(module):
    """(name, test function, arguments) for each parametrised case of a test module."""
    for attribute in sorted(dir(module)):
        test = getattr(module, attribute)
        marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
        if not attribute.startswith("test_") or len(marks) != 1:
            continue
        names, values = marks[0].args[0], marks[0].args[1]
        several = len(names.split(",") if isinstance(names, str) else names) > 1
        for number, value in enumerate(values):
            if isinstance(value, PARAMETER_SET):        # pytest.param(...): its values, marks aside
                arguments = tuple(value.values)
            else:                                       # a tuple of arguments, or the one argument
                arguments = tuple(value) if several else (value,)
            shown = [getattr(a, "__name__", a) if callable(a) else a for a in arguments]
            yield f"{module.__name__}::{attribute}[{number}]{shown}", test, arguments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=DEFAULT_MODULES)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text "
                                                   "(e.g. usual_forms: the right answers' usual forms)")
    args = parser.parse_args()
    os.environ.setdefault("COURSEKIT_PROFILE", "smoke")  # as `make test`
    import coursekit  # noqa: F401  (before Keras: the offline cache and the profile)
    failures, calls = collections.Counter(), collections.Counter()
    for module_name in args.modules:
        for name, test, arguments in parametrised_cases(importlib.import_module(module_name)):
            if args.only not in name:
                continue
            for _ in range(args.rounds):
                calls[name] += 1
                try:
                    test(*arguments)
                except KeyboardInterrupt:
                    raise
                except BaseException as error:  # an AssertionError, a check that raised, pytest's skip
                    failures[name] += 1
                    if failures[name] == 1:
                        print(f"first failure of {name}: {type(error).__name__}: {str(error)[:300]}", flush=True)
    for name, count in sorted(failures.items()):
        print(f"{count}/{calls[name]} failed: {name}")
    print(f"{len(calls)} cases, {sum(calls.values())} calls, {len(failures)} cases with a failure")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
