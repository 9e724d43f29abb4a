"""The ``kgqa`` command line. Every long step shows a progress bar on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from kgqa.data.locate import DEFAULT_INDEX_DIR
from kgqa.data.report import write_json
from kgqa.model.commands import add_quantize_flag, decode_options
from kgqa.trie.build import DEFAULT_HEAVY_THRESHOLD
from kgqa.trie.keys import KEY_ORDERS, NAME_RELATION_MEANING


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
        same = existing.manifest.built_from([kb])
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
    from kgqa.data.questions import read_predictions, read_questions

    gold = read_questions(args.gold)
    predicted = read_predictions(args.pred)
    missing = [q.id for q in gold if q.id not in predicted]
    if missing:
        print(f"note: {len(missing)} gold questions have no prediction and count as wrong", file=sys.stderr)
    metrics = evaluate_answers([predicted.get(q.id) for q in gold], [q.answer for q in gold if q.answer])
    print("  ".join(f"{k} {metrics[k]:.3f}" for k in METRIC_KEYS))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from kgqa.model.train import TrainConfig, train

    data_dir = _data_dir()
    config = TrainConfig(
        train_file=str(args.train or data_dir / "train.json"),
        dev_file=None if args.no_dev else str(args.dev or data_dir / "dev.json"),
        index_dir=str(args.index),
        out_dir=str(args.out),
        init=str(args.init) if args.init else None,
        size=args.size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        augment_ratio=args.augment_ratio,
        seed=args.seed,
        patience=args.patience,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        dev_limit=args.dev_limit,
    )
    train(config, progress=not args.quiet)
    return 0


def _data_dir() -> Path:
    from kgqa.data.locate import find_data_dir

    return find_data_dir()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.evaluate import evaluate_file, format_metrics

    answerer = QuestionAnswerer.load(args.model, args.index, decode_options(args), quantize=args.quantize)
    result = {"label": args.label} | evaluate_file(
        answerer, args.qa, skip=args.skip, limit=args.limit, predictions_out=args.out
    )
    print(format_metrics(result))
    print(f"{result['questions']:,} questions in {result['seconds']:.1f} s ({result['questions_per_second']:.1f}/s)")
    write_json(args.json, result)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from kgqa.model.candidate import top_answers
    from kgqa.model.evaluate import predict_file

    options = decode_options(args)
    if args.engine == "ray":
        from kgqa.model.ray_engine import RayNotInstalledError, import_ray, predict_with_ray

        try:
            import_ray()  # before any work: say so at once when Ray is not installed
        except RayNotInstalledError as exc:
            print(f"kgqa: error: {exc}", file=sys.stderr)
            return 2

        def answer_all(questions: list[str]) -> list:
            return predict_with_ray(
                args.model, args.index, questions, options, args.quantize, address=args.address, actors=args.actors
            )

    else:
        from kgqa.model.answerer import QuestionAnswerer

        answerer = QuestionAnswerer.load(args.model, args.index, options, quantize=args.quantize)

        def answer_all(questions: list[str]) -> list:
            return top_answers(answerer.answer(questions, top_k=1, progress=True))

    count, unanswered = predict_file(answer_all, args.qa, args.out, args.shard)
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    print(f"wrote {count:,} answers{shard} to {args.out}" + (f" ({unanswered} with no KB path)" if unanswered else ""))
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from kgqa.model.evaluate import evaluate_peer, format_metrics
    from kgqa.trie.index import KBIndex

    result = {"label": args.label} | evaluate_peer(
        KBIndex(args.index), args.qa, skip=args.skip, limit=args.limit, predictions_out=args.out
    )
    print(format_metrics(result))
    print(f"{result['questions']:,} questions in {result['seconds']:.1f} s")
    write_json(args.json, result)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    """Choose the look-ahead strength and the re-ranking weights on a slice of questions; record them in kgqa.json."""
    from kgqa.data.questions import read_questions
    from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
    from kgqa.model.modeling import TRAINING_INFO_FILE
    from kgqa.model.tune import record_tuning, tune_decoding

    questions = read_questions(args.qa)[args.start : args.stop]
    # the bonuses re-rank the beam alone (no learned ranker, no name-anchored candidates)
    answerer = QuestionAnswerer.load(args.model, args.index, DecodeOptions(num_beams=args.beams, use_ranker=False))
    table, chosen = tune_decoding(
        answerer, questions, args.strengths, args.relation_weights, args.name_weights, top_k=args.beams
    )
    chosen_on = f"{Path(args.qa).name} questions [{args.start}:{args.stop}], beam {args.beams}, by EM_O"
    record_tuning(args.model, chosen, table, chosen_on)
    print(f"chose {chosen}; written to {Path(args.model) / TRAINING_INFO_FILE}")
    return 0


def _cmd_ask(args: argparse.Namespace) -> int:
    from kgqa.model.answerer import QuestionAnswerer

    answerer = QuestionAnswerer.load(args.model, args.index, decode_options(args), quantize=args.quantize)
    for question, candidates in zip(args.questions, answerer.answer(args.questions, top_k=args.top_k), strict=True):
        print(question)
        if not candidates:
            print("  (no KB path fits this question)")
        for c in candidates:
            print(f"  p={c.probability:.3f} score={c.score:+.2f}  {c.subject} ||| {c.relation} ||| {c.object}")
            if c.contributions:
                moved = sorted(c.contributions, key=lambda gv: -abs(gv[1]))
                print("      ranker: " + ", ".join(f"{group} {value:+.2f}" for group, value in moved))
    return 0


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    from kgqa.data.questions import parse_shard

    def shard(spec: str) -> tuple[int, int]:
        try:
            return parse_shard(spec)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parser.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="ray: Ray Data over an actor pool (kgqa[ray])"
    )
    parser.add_argument("--address", help="--engine ray: the cluster to join (default: start Ray on this machine)")
    parser.add_argument("--actors", type=int, default=2, help="--engine ray: actors, each with the model loaded (2)")
    parser.add_argument(
        "--shard", type=shard, metavar="I/N", help="only the I-th of N contiguous parts of --qa (job arrays)"
    )


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
    from kgqa.model.train_config import TrainConfig

    default = {f.name: f.default for f in fields(TrainConfig)}
    tr = commands.add_parser("train", help="train a model (from scratch, or --init a local seq2seq checkpoint)")
    tr.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR, help="KB index (%(default)s)")
    tr.add_argument("--out", type=Path, required=True, help="model directory; an interrupted run here resumes")
    tr.add_argument("--train", type=Path, help="training questions (default: train.json of the KgCLUE data)")
    tr.add_argument("--dev", type=Path, help="dev questions for early stopping (default: dev.json)")
    tr.add_argument("--no-dev", action="store_true", help="no dev evaluation (keeps the last epoch)")
    tr.add_argument("--init", type=Path, help="local transformers seq2seq checkpoint to fine-tune")
    tr.add_argument("--size", default=default["size"], choices=["tiny", "small", "base"])
    tr.add_argument("--epochs", type=int, default=default["epochs"])
    tr.add_argument("--batch-size", type=int, default=default["batch_size"])
    tr.add_argument("--lr", type=float, default=default["learning_rate"])
    tr.add_argument(
        "--augment-ratio",
        type=float,
        default=default["augment_ratio"],
        help="synthetic questions per real one (0: none)",
    )
    tr.add_argument("--seed", type=int, default=default["seed"])
    tr.add_argument(
        "--patience", type=int, default=default["patience"], help="epochs without a better dev EM_O before stopping"
    )
    tr.add_argument(
        "--max-minutes", type=float, default=default["max_minutes"], help="no epoch starts that would overrun this"
    )
    tr.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    tr.add_argument("--dev-limit", type=int, help="evaluate on the first N dev questions only")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(run=_cmd_train)

    for name, run, text in (
        ("evaluate", _cmd_evaluate, "KgCLUE's official metrics of a model on a question file"),
        ("predict", _cmd_predict, "answers in KgCLUE's submission format"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", type=Path, required=True)
        sub.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR)
        sub.add_argument("--qa", type=Path, required=True, help="KgCLUE question file")
        sub.add_argument("--beams", type=int, default=5)
        sub.add_argument("--batch-size", type=int, default=64)
        sub.add_argument("--no-lookahead", action="store_true", help="no relation look-ahead re-weighting")
        sub.add_argument("--lookahead-strength", type=float, help="α in p ** (1 / (α·Δ + 1)) (default: the model's)")
        sub.add_argument("--no-rerank", action="store_true", help="rank by the model's log-probability alone")
        sub.add_argument(
            "--no-ranker", action="store_true", help="not the model directory's learned ranker (the beam, re-ranked)"
        )
        sub.add_argument(
            "--decoding-from", type=Path, help="take the tuned decoding settings from this model's kgqa.json"
        )
        sub.add_argument("--unconstrained", action="store_true", help="no trie constraint (ablation)")
        add_quantize_flag(sub)
        if name == "evaluate":
            sub.add_argument("--json", type=Path, help="write the metrics and timing as JSON")
            sub.add_argument("--label", help="name of this system in the JSON (for `kgqa bench table`)")
            sub.add_argument("--out", type=Path, help="also write the predictions (submission format)")
            sub.add_argument("--skip", type=int, default=0, help="leave out the first N questions")
            sub.add_argument("--limit", type=int, help="at most N questions (after --skip)")
        else:
            sub.add_argument("--out", type=Path, required=True, help='JSON lines {"id", "answer": "S ||| P ||| O"}')
            _add_engine_flags(sub)
        sub.set_defaults(run=run)

    tune = commands.add_parser(
        "tune", help="choose the look-ahead strength and re-ranking weights on a slice of questions"
    )
    tune.add_argument("--model", type=Path, required=True)
    tune.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR)
    tune.add_argument("--qa", type=Path, required=True)
    tune.add_argument("--start", type=int, default=0)
    tune.add_argument("--stop", type=int, default=1000)
    tune.add_argument("--beams", type=int, default=5)
    tune.add_argument("--strengths", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    tune.add_argument("--relation-weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    tune.add_argument("--name-weights", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    tune.set_defaults(run=_cmd_tune)

    ask = commands.add_parser("ask", help="answer questions given on the command line")
    ask.add_argument("questions", nargs="+")
    ask.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    ask.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR)
    ask.add_argument("--top-k", type=int, default=1)
    ask.add_argument("--beams", type=int, default=5)
    ask.add_argument("--no-ranker", action="store_true", help="not the learned ranker (the beam, re-ranked)")
    add_quantize_flag(ask)
    ask.set_defaults(run=_cmd_ask, unconstrained=False, no_lookahead=False, batch_size=64, lookahead_strength=None)

    base = commands.add_parser("baseline", help="the no-learning peer: longest KB name, then closest relation")
    base.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR)
    base.add_argument("--qa", type=Path, required=True)
    base.add_argument("--json", type=Path)
    base.add_argument("--out", type=Path, help="also write the predictions (submission format)")
    base.add_argument("--skip", type=int, default=0)
    base.add_argument("--limit", type=int)
    base.add_argument("--label", help="name of this system in the JSON (for `kgqa bench table`)")
    base.set_defaults(run=_cmd_baseline)


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

    from kgqa.bench.commands import add_bench_commands

    add_bench_commands(commands)
    from kgqa.service.commands import add_serve_command

    add_serve_command(commands)
    _add_model_commands(commands)
    from kgqa.model.ranker_commands import add_ranker_commands

    add_ranker_commands(commands, DEFAULT_INDEX_DIR)
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
