"""A newcomer's first run: a clean clone of this checkout's HEAD, ``make run`` in it, seconds until ``/readyz`` answers
200, and the size of the ``.venv`` it made. pip's cache is whatever this machine's is (warm after any install).

    python scripts/bench_first_run.py [--json bench/first-run.json]

The clone sits in a temporary directory with ``shared`` linked beside it (to this checkout's ``../shared``), as CI
lays it out; it is removed afterwards. Port 8000 must be free.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
READY_URL = "http://127.0.0.1:8000/readyz"


def _ready() -> bool:
    try:
        with urllib.request.urlopen(READY_URL, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _size_bytes(directory: Path) -> int:
    return sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def first_run(log_path: Path, timeout_s: float = 900) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kgqa-first-run-") as tmp:
        clone = Path(tmp) / "kgqa"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        (Path(tmp) / "shared").symlink_to((REPO.parent / "shared").resolve())
        env = {k: v for k, v in os.environ.items() if k not in ("KGQA_DATA_DIR", "VIRTUAL_ENV")}
        os.sync()  # start with no writeback pending (a previous run's gigabyte of .venv would slow this one down)
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            make = subprocess.Popen(
                ["make", "run"], cwd=clone, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            while not _ready():
                if make.poll() is not None:
                    raise SystemExit(f"make run exited with {make.returncode} before /readyz answered: see {log_path}")
                if time.perf_counter() - started > timeout_s:
                    raise SystemExit(f"not ready after {timeout_s:.0f} s: see {log_path}")
                time.sleep(0.25)
            ready_s = time.perf_counter() - started
        finally:
            os.killpg(make.pid, signal.SIGINT)
            make.wait(timeout=30)
        return {"ready_s": round(ready_s, 1), "venv_bytes": _size_bytes(clone / ".venv")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "first-run.json")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "kgqa-first-run.log")
    args = parser.parse_args()
    result = first_run(args.log)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    result = {"commit": commit.strip(), "date": time.strftime("%Y-%m-%d"), **result}
    print("| clean clone -> /readyz 200 | .venv |\n| ---: | ---: |")
    print(f"| {result['ready_s']:.1f} s | {result['venv_bytes'] / 2**30:.2f} GiB |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
