"""Print pyproject.toml's pinned requirement of each package named on the command line (``make`` installs a few
packages ahead of the rest at the versions the project pins)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned(names: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    requirements = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    by_name = {re.split(r"[\s=<>!~\[;]", r, maxsplit=1)[0].lower(): r for r in requirements}
    missing = [n for n in names if n.lower() not in by_name]
    if missing:
        raise SystemExit(f"not among pyproject.toml's dependencies: {', '.join(missing)}")
    return [by_name[n.lower()] for n in names]


if __name__ == "__main__":
    print(" ".join(pinned(sys.argv[1:])))
