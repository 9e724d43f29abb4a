"""The index's commands: ``kgqa prepare`` (find the data, build its index unless it is up to date) and ``kgqa index
build | info | verify | triples | next``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kgqa.trie.build import DEFAULT_HEAVY_THRESHOLD
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


def _cmd_index_build(args: argparse.Namespace) -> int:
    from kgqa.trie.build import build_index

    manifest = build_index(
        args.kb, args.out, heavy_threshold=args.heavy_threshold, progress=not args.quiet, key_order=args.key_order
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
    manifest = build_index([kb], args.out, progress=True)
    _print_manifest(args.out, manifest.counts, manifest.read, manifest.build_seconds)
    return 0
