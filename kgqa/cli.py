"""The ``kgqa`` command line. Every long step shows a progress bar on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kgqa.trie.build import DEFAULT_HEAVY_THRESHOLD

DEFAULT_INDEX_DIR = Path("indexes/kgclue-sim")


def _cmd_index_build(args: argparse.Namespace) -> int:
    from kgqa.trie.build import build_index

    manifest = build_index(args.kb, args.out, heavy_threshold=args.heavy_threshold, progress=not args.quiet)
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


def _cmd_data_locate(args: argparse.Namespace) -> int:
    from kgqa.data.locate import find_data_dir, knowledge_file

    directory = find_data_dir(download=args.download)
    print(directory)
    if knowledge_file(directory) is None:
        print(
            f"note: {directory} has no knowledge file; `kgqa prepare` uses the question files' answer triples",
            file=sys.stderr,
        )
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
        same = [s["path"] for s in existing.manifest.sources] == [str(kb.resolve())] and [
            s["size"] for s in existing.manifest.sources
        ] == [kb.stat().st_size]
    except IndexLoadError:
        same = False
    if same and not args.force:
        print(f"index {args.out} is up to date ({len(existing):,} paths); --force rebuilds it")
        return 0
    manifest = build_index([kb], args.out, progress=True)
    _print_manifest(args.out, manifest.counts, manifest.read, manifest.build_seconds)
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from kgqa.data.metrics import METRIC_KEYS, evaluate_answers
    from kgqa.data.questions import read_questions

    gold = read_questions(args.gold)
    predicted = {q.id: q.answer for q in read_questions(args.pred)}
    missing = [q.id for q in gold if q.id not in predicted]
    if missing:
        print(f"note: {len(missing)} gold questions have no prediction and count as wrong", file=sys.stderr)
    metrics = evaluate_answers([predicted.get(q.id) for q in gold], [q.answer for q in gold if q.answer])
    print("  ".join(f"{k} {metrics[k]:.3f}" for k in METRIC_KEYS))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _cmd_bench_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kgqa.data.synthetic import write_synthetic_kb

    with tqdm(total=args.triples, desc="synthetic KB", unit="triple", unit_scale=True) as bar:
        counts = write_synthetic_kb(args.out, args.triples, args.seed, progress=bar.update)
    print(f"{args.out}: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()))
    return 0


def _cmd_bench_index(args: argparse.Namespace) -> int:
    from kgqa.trie.bench import bench_index, format_table

    result = bench_index(
        args.kb, args.work, args.queries, args.baseline_seconds, args.seed, args.heavy_threshold, reuse=args.reuse
    )
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwritten {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kgqa", description="Question answering over a knowledge graph (KgCLUE).")
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="find the KgCLUE data and build the index of its knowledge base")
    prepare.add_argument("--out", type=Path, default=DEFAULT_INDEX_DIR, help="index directory (%(default)s)")
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

    data = commands.add_parser("data", help="KgCLUE data files").add_subparsers(dest="data_command", required=True)
    locate = data.add_parser(
        "locate",
        help="print the KgCLUE data directory ($KGQA_DATA_DIR, ./data/kgclue, "
        "../shared/kgclue, else download the question files)",
    )
    locate.add_argument("--no-download", dest="download", action="store_false")
    locate.set_defaults(run=_cmd_data_locate)

    metrics = commands.add_parser("metrics", help="KgCLUE's official metrics of a prediction file against gold")
    metrics.add_argument("--pred", type=Path, required=True, help='JSON lines {"id", "answer": "S ||| P ||| O"}')
    metrics.add_argument("--gold", type=Path, required=True, help="KgCLUE question file with answers")
    metrics.add_argument("--json", type=Path, help="also write the metrics here")
    metrics.set_defaults(run=_cmd_metrics)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    synth = bench.add_parser("synth-kb", help="write a synthetic KB shaped like KgCLUE's")
    synth.add_argument("--triples", type=int, default=20_559_652)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True, help="knowledge file (.gz to compress)")
    synth.set_defaults(run=_cmd_bench_synth)
    bidx = bench.add_parser("index", help="index build/size/load/query benchmark against a GENRE-style baseline")
    bidx.add_argument("--kb", type=Path, action="append", required=True)
    bidx.add_argument("--work", type=Path, default=Path("bench/index"), help="where the index is built")
    bidx.add_argument("--json", type=Path, help="write the results as JSON")
    bidx.add_argument("--queries", type=int, default=2000, help="random real prefixes per depth (%(default)s)")
    bidx.add_argument(
        "--baseline-seconds", type=float, default=20.0, help="time budget of the baseline per depth (%(default)s)"
    )
    bidx.add_argument("--seed", type=int, default=0)
    bidx.add_argument("--heavy-threshold", type=int)
    bidx.add_argument("--reuse", action="store_true", help="reuse an index already built in --work")
    bidx.set_defaults(run=_cmd_bench_index)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kgqa.data.locate import DataNotFoundError
    from kgqa.data.questions import QuestionFileError
    from kgqa.trie.manifest import IndexLoadError

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (IndexLoadError, DataNotFoundError, QuestionFileError, FileNotFoundError, ValueError) as exc:
        print(f"kgqa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
