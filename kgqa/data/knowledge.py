"""Knowledge files in KgCLUE's ``Knowledge.txt`` format: ``head<TAB>relation<TAB>tail``, plain or gzip.

Files are streamed line by line (the real one is 20.5M triples, ~3 GB). Malformed lines are skipped and counted by
reason in a :class:`SkipCounter`; they never abort a read.
"""

from __future__ import annotations

import gzip
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

OPEN_MEANING = "（"
CLOSE_MEANING = "）"
GZIP_MAGIC = b"\x1f\x8b"

# Control characters are never legitimate in KB strings, and the index reserves two of them as separators.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")
_CONTROL_CHARS_BUT_TAB = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # one search of a whole line: most have none
READ_BUFFER_BYTES = 1 << 20


class Triple(NamedTuple):
    head: str
    relation: str
    tail: str


def split_head(head: str) -> tuple[str, str]:
    """Split ``name（meaning）`` into ``(name, meaning)``; a head without a trailing meaning gives ``(head, "")``.

    The meaning is the last balanced full-width group at the very end, so ``A（B（C））`` → ``("A", "B（C）")`` and
    ``A（B）（C）`` → ``("A（B）", "C")``. A head that merely ends in a parenthesis (unbalanced, an empty group, or a
    group that is the whole head) is a bare name. ``join_head(*split_head(h)) == h`` for every ``h``.
    """
    if not head.endswith(CLOSE_MEANING):
        return head, ""
    depth = 0
    for i in range(len(head) - 1, -1, -1):
        ch = head[i]
        if ch == CLOSE_MEANING:
            depth += 1
        elif ch == OPEN_MEANING:
            depth -= 1
            if depth == 0:
                name, meaning = head[:i], head[i + 1 : -1]
                if name and meaning:
                    return name, meaning
                return head, ""
    return head, ""


def join_head(name: str, meaning: str) -> str:
    """Inverse of :func:`split_head`."""
    return f"{name}{OPEN_MEANING}{meaning}{CLOSE_MEANING}" if meaning else name


MAX_EXAMPLES = 5


@dataclass
class SkipCounter:
    """Counts what a read kept and what it skipped, by reason, with a few examples for the report."""

    lines: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    # (file name, line number, reason) of the first skipped lines
    first_skips: list[tuple[str, int, str]] = field(default_factory=list)

    def skip(self, reason: str, line_no: int, source: str) -> None:
        self.skipped[reason] += 1
        if len(self.first_skips) < MAX_EXAMPLES:
            self.first_skips.append((source, line_no, reason))

    def add(self, later: SkipCounter, line_base: int = 0) -> None:
        """Count in what a read of later lines counted; its line numbers were counted from ``line_base`` + 1."""
        self.lines += later.lines
        self.kept += later.kept
        self.skipped.update(later.skipped)
        room = MAX_EXAMPLES - len(self.first_skips)
        self.first_skips += [(source, line_base + line, reason) for source, line, reason in later.first_skips[:room]]

    @property
    def examples(self) -> list[str]:
        return [f"{source}:{line}: {reason}" for source, line, reason in self.first_skips]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "kept": self.kept,
            "skipped": self.skipped_total,
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "examples": self.examples,
        }


def open_binary(path: str | Path) -> tuple[BinaryIO, BinaryIO]:
    """Open ``path`` for reading bytes, transparently gunzipping; gzip is detected by magic bytes, not the name.

    Returns ``(stream, raw)``: read lines from ``stream``; ``raw.tell()`` is the position in the file on disk,
    which progress bars use.
    """
    raw = open(path, "rb")  # noqa: SIM115 - the caller closes it
    magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if magic == GZIP_MAGIC:
        # GzipFile's own readline is Python code; a BufferedReader over it splits lines in C
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), READ_BUFFER_BYTES), raw
    return raw, raw


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def iter_triples(
    path: str | Path,
    counter: SkipCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Triple]:
    """Stream the valid triples of one knowledge file.

    ``counter`` accumulates line counts and skip reasons (columns, empty field, bad UTF-8, control character).
    ``on_progress(bytes_read_on_disk)`` is called every 64k lines and at the end.
    """
    for _, triple in iter_triples_at(path, counter=counter, on_progress=on_progress):
        yield triple


def iter_triples_at(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    counter: SkipCounter | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Triple]]:
    """The valid triples of the lines that start at a byte in ``[start, stop)`` of a knowledge file, each with that
    byte's offset in the file's text (for gzip, in the decompressed text: a gzip file is read whole).

    So the ranges of any split of a file into consecutive ranges read each line exactly once. Line numbers (in the
    counter's examples) count from the range's first line.
    """
    counter = counter if counter is not None else SkipCounter()
    source = Path(path).name
    stream, raw = open_binary(path)
    try:
        if stream is not raw and (start or stop is not None):
            raise ValueError(f"{path} is gzip: it is read whole, not by byte range")
        if start:
            raw.seek(start - 1)
            raw.readline()  # the line holding byte start - 1 starts before start: it is the previous range's
        offset = raw.tell() if stream is raw else 0
        for line_no, raw_line in enumerate(stream, 1):
            if stop is not None and offset >= stop:
                break
            line_offset, offset = offset, offset + len(raw_line)
            counter.lines += 1
            if on_progress is not None and line_no & 0xFFFF == 0:
                on_progress(raw.tell())
            triple = _valid_triple(raw_line, line_no, source, counter)
            if triple is not None:
                counter.kept += 1
                yield line_offset, triple
        if on_progress is not None:
            on_progress(raw.tell())
    finally:
        stream.close()
        raw.close()


def _valid_triple(raw_line: bytes, line_no: int, source: str, counter: SkipCounter) -> Triple | None:
    """The line's triple, or None with the reason counted."""
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError:
        counter.skip("bad utf-8", line_no, source)
        return None
    line = line.rstrip("\r\n")
    fields = line.split("\t")
    if len(fields) != 3:
        counter.skip("blank line" if len(fields) == 1 and not fields[0].strip() else "column count", line_no, source)
        return None
    head, relation, tail = fields[0].strip(), fields[1].strip(), fields[2].strip()
    if not head or not relation or not tail:
        counter.skip("empty field", line_no, source)
        return None
    # a control character the fields' strip() removed is no reason to skip: look again in the fields
    if _CONTROL_CHARS_BUT_TAB.search(line) is not None and _has_control(head, relation, tail):
        counter.skip("control character", line_no, source)
        return None
    return Triple(head, relation, tail)


def _has_control(*fields: str) -> bool:
    return any(_CONTROL_CHARS.search(f) for f in fields)
