"""``make bench``: run every ``bench/bench_*.py`` in its own process, one after another.

One after another on purpose: the figures are ratios measured side by side
within one script, and two scripts sharing the CPU would skew each other.
Pass names to run some of them: ``python -m bench catalog daemon``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent / "python"),
                                                                     os.environ.get("PYTHONPATH")])))
    failed = []
    for script in scripts:
        print(f"# {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], env=env).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
