"""Every lesson's claims ran, and its page is clean: the checks that follow each lesson under nbval.

`make test` runs each lesson once (nbval); the repository's conftest.py then adds two items per
lesson that read what its cells printed in that run: "claims checked" (as many verdicts of
coursekit.claims.claim as calls in the source) and "clean page" (no terminal colour codes, Keras
progress bars or retracing warnings; each progress bar shown once). Here both run on small lessons
made to pass and to fail, in a pytest of their own with the repository's conftest.py; and a claim
that stops holding fails its lesson, naming the sentence.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from coursekit.tools.course import lesson_notebooks
from coursekit.tools.gallery import execute

ROOT = Path(__file__).resolve().parents[1]
IMPORT = "from coursekit.claims import claim"


def write(path, *sources):
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def test_a_broken_claim_fails_the_lesson_naming_the_sentence(tmp_path):
    write(tmp_path / "01_lesson.ipynb", IMPORT + "\nshare = 0.31",
          "claim(share > 0.5, '§2: most of the mass lies on the object', f'share on the object {share:.2f}')",
          "print('never reached')")
    result = execute(tmp_path / "01_lesson.ipynb", tmp_path / "run", progress=False)
    assert not result.ok and result.error_name == "ClaimError"
    assert "Sentence: §2: most of the mass lies on the object" in result.error
    assert "Numbers:  share on the object 0.31" in result.error


def test_the_checks_after_each_lesson_catch_a_claim_that_did_not_run_and_an_unclean_page(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    lessons = tmp_path / "notebooks"
    lessons.mkdir()
    write(lessons / "01_good.ipynb", "import sys\nif 'google.colab' in sys.modules:\n    %pip install --quiet nothing\n"
          + IMPORT + "\nfrom tqdm.auto import tqdm",                    # a setup cell's magic inside an if
          "for step in tqdm(range(3), desc='training'):\n    pass",
          "claim(2 > 1, '§1: two is more than one', '2 vs 1')\nclaim(True, '§1: the second sentence', 'ok')")
    write(lessons / "02_skipped_claim.ipynb", IMPORT,
          "claim(True, '§1: a sentence', 'ok')",
          "if False:\n    claim(True, '§2: a sentence in a branch that never runs', 'never printed')")
    write(lessons / "03_unclean.ipynb", IMPORT + "\nimport sys",
          "print('\\x1b[31mred\\x1b[0m')\nprint('1/1 ━━━━━━━━━━━━━━━━━━━━ 0s 45ms/step')",
          "for i in range(2):\n    print(f'block {i}', flush=True)\n"
          "    sys.stderr.write(f'\\rdeep dream:  50%|█████     | {i + 1}/2\\n'); sys.stderr.flush()",
          "claim(True, '§1: a sentence', 'ok')")
    write(lessons / "04_no_claims.ipynb", "print('a lesson that checks nothing')")
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
                             "--nbval-lax", "-rA", "notebooks"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = result.stdout
    assert result.returncode == 1, report[-3000:]
    summary = {line.split(" ", 1)[1].split(" - ")[0].strip(): line.split(" ", 1)[0]
               for line in report.splitlines() if line.startswith(("PASSED ", "FAILED ", "SKIPPED "))}
    assert summary["notebooks/01_good.ipynb::claims checked"] == "PASSED", report[-3000:]
    assert summary["notebooks/01_good.ipynb::clean page"] == "PASSED", report[-3000:]
    assert summary["notebooks/02_skipped_claim.ipynb::claims checked"] == "FAILED"
    assert "2 claim(...) calls in the source, 1 verdicts printed" in report
    assert summary["notebooks/03_unclean.ipynb::claims checked"] == "PASSED"
    assert summary["notebooks/03_unclean.ipynb::clean page"] == "FAILED"
    for problem in ("a terminal colour code", "a Keras progress bar", "the progress bar 'deep dream:' is shown 2 times"):
        assert problem in report, problem
    assert summary["notebooks/04_no_claims.ipynb::claims checked"] == "FAILED" and "no claim(...) in this lesson" in report


def test_every_lesson_is_followed_by_both_checks():
    """The checks find the lessons as everything else does: a new notebooks/NN_*.ipynb is covered at once."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "--nbval-lax", "--collect-only", "-q",
                             "notebooks"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    collected = result.stdout.splitlines()
    for lesson in lesson_notebooks(ROOT / "notebooks"):
        for check in ("claims checked", "clean page"):
            assert f"notebooks/{lesson.name}::{check}" in collected, (lesson.name, check, result.stdout[-2000:])
