"""``kgqa serve`` in a child process, for the end-to-end tests and the load benchmark: start, wait, stop.

No HTTP client dependency: the readiness probe is urllib's (psutil watches the process tree).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil


class ServerProcess:
    """``kgqa serve --port 0`` on loopback; ``url`` is known once it has printed it, ``start`` returns when ready."""

    def __init__(self, model: Path, index: Path, *flags: str, access_log: bool = False) -> None:
        self.command = [sys.executable, "-m", "kgqa.cli", "serve", "--model", str(model), "--index", str(index)]
        self.command += ["--host", "127.0.0.1", "--port", "0", *([] if access_log else ["--no-access-log"]), *flags]
        self.output: list[str] = []
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> ServerProcess:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while not self.url:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"kgqa serve exited ({self.process.wait()}):\n" + "".join(self.output))
            self.output.append(line)
            found = re.search(r"serving on (http://\S+)", line)
            self.url = found.group(1) if found else ""
        # keep reading its output, so that a full pipe never blocks the server
        threading.Thread(target=self.output.extend, args=(self.process.stdout,), daemon=True).start()
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"kgqa serve exited ({self.process.returncode}):\n" + "".join(self.output))
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"kgqa serve was not ready in {timeout:.0f} s:\n" + "".join(self.output))

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (a graceful stop), then its exit status; killed if it outlasts ``timeout``."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (none if it is gone)."""
    try:
        return {child.pid for child in psutil.Process(pid).children()}
    except psutil.NoSuchProcess:
        return set()


def memory_mb(pids: list[int]) -> dict[str, float]:
    """RSS and PSS (shared pages split among their users) summed over ``pids``; a process gone meanwhile counts
    nothing."""
    rss = pss = 0
    for pid in pids:
        try:
            memory = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += memory.rss
        pss += memory.pss
    return {"processes": len(pids), "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)}


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [pid]
