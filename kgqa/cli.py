"""The ``kgqa`` command line. Every long step shows a progress bar on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kgqa.data.locate import DEFAULT_INDEX_DIR


def build_parser() -> argparse.ArgumentParser:
    """Every room declares its own commands; this only assembles them (each imports its heavy parts when it runs)."""
    from kgqa.bench.commands import add_bench_commands
    from kgqa.data.commands import add_data_commands
    from kgqa.model.batch_commands import add_batch_commands
    from kgqa.model.commands import add_model_commands
    from kgqa.model.runtime.commands import add_runtime_commands
    from kgqa.model.train.ranker_commands import add_ranker_commands
    from kgqa.service.commands import add_serve_command
    from kgqa.trie.commands import add_index_commands

    parser = argparse.ArgumentParser(prog="kgqa", description="Question answering over a knowledge graph (KgCLUE).")
    commands = parser.add_subparsers(dest="command", required=True)
    add_index_commands(commands, DEFAULT_INDEX_DIR)
    add_data_commands(commands)
    add_bench_commands(commands)
    add_serve_command(commands)
    add_model_commands(commands, DEFAULT_INDEX_DIR)
    add_runtime_commands(commands)
    add_batch_commands(commands, DEFAULT_INDEX_DIR)
    add_ranker_commands(commands, DEFAULT_INDEX_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kgqa.data.locate import DataNotFoundError
    from kgqa.data.questions import QuestionFileError
    from kgqa.trie.manifest import IndexBuildError, IndexLoadError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (
        IndexLoadError,
        DataNotFoundError,
        QuestionFileError,
        OSError,  # a missing file, a full disk, not enough disk for an index build
        ValueError,
        IndexBuildError,
    ) as exc:
        print(f"kgqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
