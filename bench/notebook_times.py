"""Wall time of every lesson notebook in each profile, each run in a fresh kernel.

    python bench/notebook_times.py                      # the smoke profile
    python bench/notebook_times.py --profiles smoke quick full
    python bench/notebook_times.py --folders notebooks solutions exercises

A profile whose models cannot be had here (e.g. `full` offline) is reported per notebook as
failed with the reason, not hidden. Times include kernel start. ``--random-weights`` gives the
ImageNet models random weights (COURSEKIT_RANDOM_WEIGHTS=1), so that the quick and full
profiles' code runs, and is timed, where their weights cannot be downloaded; the pictures are
then meaningless, the times are not (they do not depend on the weights).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coursekit.env import RANDOM_WEIGHTS_VARIABLE  # noqa: E402
from coursekit.tools.gallery import execute  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=["smoke"])
    parser.add_argument("--folders", nargs="+", default=["notebooks"])
    parser.add_argument("--only", nargs="*", help="only notebooks whose name contains one of these")
    parser.add_argument("--random-weights", action="store_true",
                        help="ImageNet models with random weights (runs quick/full offline)")
    args = parser.parse_args()
    if args.random_weights:
        os.environ[RANDOM_WEIGHTS_VARIABLE] = "1"  # the kernels inherit it
    notebooks = [path for folder in args.folders for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))
                 if not args.only or any(key in path.name for key in args.only)]
    rows = []
    for profile_name in args.profiles:
        os.environ["COURSEKIT_PROFILE"] = profile_name  # the kernel inherits it
        for path in notebooks:
            with tempfile.TemporaryDirectory() as workdir:
                result = execute(path, workdir, progress=False)
            rows.append((profile_name, path.relative_to(ROOT), result.seconds, result.error))
            print(f"{profile_name:<6} {str(path.relative_to(ROOT)):<42} {result.seconds:7.1f} s  "
                  f"{'ok' if result.ok else 'FAILED: ' + result.error}", flush=True)
    print("\nprofile  notebook                                    wall time"
          + ("  (random ImageNet weights)" if args.random_weights else ""))
    for profile_name, path, seconds, error in rows:
        print(f"{profile_name:<8} {str(path):<42} {seconds:7.1f} s{'' if error is None else '  (failed)'}")
    return 0 if all(error is None for *_, error in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
