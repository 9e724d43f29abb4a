"""The index's commands: ``kgqa prepare`` (find the data, build its index unless it is up to date) and ``kgqa index
build | info | verify | triples | next``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from kgqa.trie.build import DEFAULT_HEAVY_THRESHOLD, DEFAULT_MEMORY_BUDGET
from kgqa.trie.keys import KEY_ORDERS, NAME_RELATION_MEANING


def add_index_commands(commands: argparse._SubParsersAction, default_index: Path) -> None:
    prepare = commands.add_parser("prepare", help="find the KgCLUE data and build the index of its knowledge base")
    prepare.add_argument("--out", type=Path, default=default_index, help="index directory (%(default)s)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if an index of the same files exists")
    prepare.set_defaults(run=_cmd_prepare)

    index = commands.add_parser("index", help="build and inspect knowledge-base indexes").add_subparsers(
        dest="index_command", required=True
    )
    build = index.add_parser("build", help="compile knowledge files (head<TAB>relation<TAB>tail, plain or gzip)")
    build.add_argument("--kb", type=Path, action="append", required=True, help="knowledge file; repeat for several")
    build.add_argument("--out", type=Path, required=True, help="index directory to write (replaced atomically)")
    build.add_argument(
        "--heavy-threshold",
        type=int,
        default=DEFAULT_HEAVY_THRESHOLD,
        help="precompute next characters of prefixes with more keys below than this (%(default)s)",
    )
    build.add_argument(
        "--key-order",
        default=NAME_RELATION_MEANING,
        choices=KEY_ORDERS,
        help="order of the parts of a key, i.e. of the decoder's target (%(default)s; the other is an ablation)",
    )
    build.add_argument(
        "--memory-budget",
        type=byte_size,
        default=DEFAULT_MEMORY_BUDGET,
        metavar="SIZE",
        help="memory each process of the build may hold, e.g. 2G or 512M (%(default)s bytes); a bigger KB spills "
        "more sorted runs to disk beside --out and makes more shards, not more memory",
    )
    build.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="pieces of the knowledge files read at once (byte ranges of plain files; a gzip file is one piece), then "
        "shards built at once: worker processes or Ray tasks (%(default)s; the files do not depend on it)",
    )
    build.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="read the pieces and build the shards here, or as Ray tasks (needs kgqa[ray]; on a cluster, --kb and "
        "--out must be on storage every node sees at the same paths)",
    )
    build.add_argument("--ray-address", help="Ray cluster to join (e.g. auto or ray://head:10001); default: start one")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(run=_cmd_index_build)
    for name, run, text in (
        ("info", _cmd_index_info, "show an index's manifest"),
        ("verify", _cmd_index_verify, "check every index file against its checksum"),
    ):
        sub = index.add_parser(name, help=text)
        sub.add_argument("index", type=Path)
        sub.set_defaults(run=run)
    triples = index.add_parser("triples", help="print every triple of an entity name, all meanings")
    triples.add_argument("index", type=Path)
    triples.add_argument("name")
    triples.set_defaults(run=_cmd_index_triples)
    nxt = index.add_parser("next", help="allowed next characters of a partial path name|relation|meaning")
    nxt.add_argument("index", type=Path)
    nxt.add_argument("prefix", help="'|' stands for the separator, e.g. '守望星光|出'")
    nxt.add_argument("--limit", type=int, default=50)
    nxt.set_defaults(run=_cmd_index_next)


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def byte_size(text: str) -> int:
    """``2G``, ``512M``, ``1.5G`` or plain bytes (binary units; a trailing B or iB is allowed)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _SIZE_UNITS else ""
    try:
        return int(float(value.removesuffix(unit)) * _SIZE_UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2G, 512M, 1500000000)") from None


def _terminate_as_exit(signum: int, frame: object) -> None:
    """SIGTERM ends a build as Ctrl-C does: its temporary files are removed and the old index stays."""
    raise SystemExit(128 + signum)


def _cmd_index_build(args: argparse.Namespace) -> int:
    from kgqa.trie.build import build_index

    signal.signal(signal.SIGTERM, _terminate_as_exit)
    manifest = build_index(
        args.kb,
        args.out,
        heavy_threshold=args.heavy_threshold,
        progress=not args.quiet,
        key_order=args.key_order,
        memory_budget=args.memory_budget,
        jobs=args.jobs,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    _print_manifest(args.out, manifest.counts, manifest.read, manifest.build_seconds)
    return 0


def _print_manifest(directory: Path, counts: dict, read: dict, seconds: float) -> None:
    print(f"index {directory}: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()))
    skipped = read["skipped"]
    detail = ", ".join(f"{n:,} {reason}" for reason, n in read["skipped_by_reason"].items())
    print(
        f"read {read['lines']:,} lines, kept {read['kept']:,}, skipped {skipped:,}"
        + (f" ({detail})" if skipped else "")
    )
    for example in read["examples"]:
        print(f"  skipped {example}")
    print(f"built in {seconds:.1f} s")


def _cmd_index_info(args: argparse.Namespace) -> int:
    from kgqa.trie.index import KBIndex

    index = KBIndex(args.index)
    m = index.manifest
    _print_manifest(args.index, m.counts, m.read, m.build_seconds)
    for source in m.sources:
        print(f"source {source['path']} ({source['size']:,} bytes, sha256 {source['sha256'][:16]}…)")
    print(
        f"format version {m.format_version}, created {m.created_at}, "
        f"{sum(f['size'] for f in m.files.values()) / 1e6:.1f} MB on disk"
    )
    return 0


def _cmd_index_verify(args: argparse.Namespace) -> int:
    from kgqa.trie.manifest import Manifest, rebuild_hint

    manifest = Manifest.read(args.index)
    bad = manifest.verify_checksums(args.index)
    if bad:
        print(f"checksum mismatch in {', '.join(bad)}; {rebuild_hint(args.index)}", file=sys.stderr)
        return 1
    print(f"{args.index}: {len(manifest.files)} files match their checksums")
    return 0


def _cmd_index_triples(args: argparse.Namespace) -> int:
    from kgqa.trie.index import KBIndex

    triples = KBIndex(args.index).triples(args.name)
    if not triples:
        print(f"no entity named {args.name!r}", file=sys.stderr)
        return 1
    for t in triples:
        print(f"{t.head}\t{t.relation}\t{t.object}")
    return 0


def _cmd_index_next(args: argparse.Namespace) -> int:
    from kgqa.trie.index import KBIndex
    from kgqa.trie.keys import END, SEP

    prefix = args.prefix.replace("|", SEP)
    chars = KBIndex(args.index).next_chars(prefix)
    shown = ["|" if c == SEP else "<end>" if c == END else c for c in chars]
    print(f"{len(chars)} allowed: " + " ".join(shown[: args.limit]) + (" …" if len(chars) > args.limit else ""))
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    """Find the data and build the index of its knowledge base, unless an index of the same files is there."""
    from kgqa.data.locate import find_data_dir, knowledge_file
    from kgqa.data.questions import read_questions, write_answer_kb
    from kgqa.trie.build import build_index
    from kgqa.trie.index import KBIndex
    from kgqa.trie.manifest import IndexLoadError

    data_dir = find_data_dir()
    print(f"KgCLUE data: {data_dir}")
    kb = knowledge_file(data_dir)
    if kb is None:
        kb = args.out.parent / "answer_triples.tsv"
        kb.parent.mkdir(parents=True, exist_ok=True)
        questions = [q for name in ("train.json", "dev.json") for q in read_questions(data_dir / name)]
        count = write_answer_kb(questions, kb)
        print(f"no knowledge file in {data_dir}: using the {count:,} answer triples of train and dev ({kb})")
    try:
        existing = KBIndex(args.out)
        same = existing.manifest.built_from([kb])
    except IndexLoadError:
        same = False
    if same and not args.force:
        print(f"index {args.out} is up to date ({len(existing):,} paths); --force rebuilds it")
        return 0
    signal.signal(signal.SIGTERM, _terminate_as_exit)
    manifest = build_index([kb], args.out, progress=True)
    _print_manifest(args.out, manifest.counts, manifest.read, manifest.build_seconds)
    return 0
