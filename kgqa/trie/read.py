"""The pass over the knowledge files, in pieces read in parallel: each piece's triples become sorted runs.

A plain-text file is cut into byte ranges (a line belongs to the range its first byte is in), a gzip file is one
piece (it can only be read from its start). Each run line carries its triple's position in the files (file number,
byte offset of the line), so the merged stream of all runs, and so the index, is the same however the files were
cut and whichever process read a piece.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kgqa.data.knowledge import SkipCounter, is_gzip, iter_triples_at
from kgqa.trie.engines import Runner, run_in_order
from kgqa.trie.runs import FILE_STRIDE, MAX_FILES, SortedRuns, write_sorted_runs

# a piece's text in memory as run lines (the key and the position added, a bytes object's header) takes about this
# many bytes per byte of text: so a piece of buffer / 2 bytes is usually sorted as one run
READ_MEMORY_PER_TEXT_BYTE = 2


@dataclass(frozen=True)
class Piece:
    """Lines of one knowledge file starting in ``[start, stop)`` (``stop`` None: to the end)."""

    number: int
    file_number: int
    path: str
    start: int
    stop: int | None
    disk_bytes: int  # what reading it advances the progress by


@dataclass
class PieceRead:
    runs: SortedRuns
    counter: SkipCounter


def plan_pieces(kb_files: Sequence[Path], piece_bytes: int) -> list[Piece]:
    """The pieces of ``kb_files``, in file order; a plain file in ranges of ``piece_bytes``, a gzip file whole."""
    if len(kb_files) > MAX_FILES:
        raise ValueError(f"an index is built from at most {MAX_FILES} knowledge files, not {len(kb_files)}")
    pieces: list[Piece] = []
    for file_number, path in enumerate(kb_files):
        size = path.stat().st_size
        if size >= FILE_STRIDE:
            raise ValueError(f"{path} is {size:,} bytes; a knowledge file holds less than {FILE_STRIDE:,}")
        starts = [0] if is_gzip(path) else list(range(0, max(size, 1), max(1, piece_bytes)))
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else None
            disk = (stop if stop is not None else size) - start
            pieces.append(Piece(len(pieces), file_number, str(path), start, stop, disk))
    return pieces


def read_piece(
    piece: Piece,
    directory: str,
    buffer_bytes: int,
    key_order: str,
    on_position: Callable[[int], None] | None = None,
) -> PieceRead:
    """Read one piece into sorted runs ``run-PPPPP-NNNNN`` in ``directory`` (a task: runs in any process; only one run
    in this process can be told its position in the file as it goes, ``on_position``)."""
    counter = SkipCounter()
    base = piece.file_number * FILE_STRIDE
    lines = iter_triples_at(piece.path, piece.start, piece.stop, counter, on_position)
    triples = ((base + offset, triple) for offset, triple in lines)
    runs = write_sorted_runs(triples, Path(directory), buffer_bytes, key_order, name=f"run-{piece.number:05d}")
    return PieceRead(runs, counter)


def read_into_runs(
    kb_files: Sequence[Path],
    directory: Path,
    buffer_bytes: int,
    key_order: str,
    runner: Runner,
    jobs: int,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[SortedRuns, SkipCounter]:
    """Read every file into sorted runs in ``directory``, ``jobs`` pieces at once, each with ``buffer_bytes`` / ``jobs``
    of sort buffer; the runs in piece order and what the read counted (line numbers as if read in one pass)."""
    buffer = max(1, buffer_bytes // jobs)
    pieces = plan_pieces(kb_files, buffer // READ_MEMORY_PER_TEXT_BYTE)
    runs, counter = SortedRuns(), SkipCounter()
    lines_before = [0] * len(kb_files)  # lines of each file in the pieces already counted
    shown = [0] * len(pieces)  # bytes of each piece the progress has been told of

    def on_result(args: tuple, read: PieceRead) -> None:
        piece: Piece = args[0]
        runs.paths += read.runs.paths
        runs.triples += read.runs.triples
        counter.add(read.counter, line_base=lines_before[piece.file_number])
        lines_before[piece.file_number] += read.counter.lines
        if on_bytes is not None:
            on_bytes(piece.disk_bytes - shown[piece.number])

    def progress_of(piece: Piece) -> Callable[[int], None] | None:
        """Progress within a piece, read in this process (other processes' pieces count when they are done)."""
        if on_bytes is None or not runner.in_process:
            return None

        def on_position(position: int) -> None:
            done = min(position - piece.start, piece.disk_bytes)
            on_bytes(done - shown[piece.number])
            shown[piece.number] = done

        return on_position

    arguments = ((piece, str(directory), buffer, key_order, progress_of(piece)) for piece in pieces)
    run_in_order(runner, read_piece, arguments, jobs, on_result)
    return runs, counter
