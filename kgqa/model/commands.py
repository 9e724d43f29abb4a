"""The model's commands: ``kgqa train``, ``evaluate``, ``predict``, ``baseline``, ``tune``, ``ask``; and what they share
(decoding options from the command line, the --quantize flag). torch loads only when a command runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from kgqa.data.report import write_json
from kgqa.model.options import DEFAULT_BEAMS, SEARCHES, DecodeOptions  # light: torch loads only when a command decodes

if TYPE_CHECKING:
    from kgqa.model.answerer import QuestionAnswerer


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """Decoding options from the command line; what it leaves out comes from the model's ``kgqa.json``."""
    from kgqa.model.modeling import read_training_info

    source = Path(getattr(args, "decoding_from", None) or args.model)
    changes: dict = {
        "num_beams": args.beams,
        "constrained": not args.unconstrained,
        "lookahead": not args.no_lookahead,
        "batch_size": args.batch_size,
        "lookahead_strength": args.lookahead_strength,
        "search": getattr(args, "search", None),
        "search_margin": getattr(args, "search_margin", None),
        "abstain_below": getattr(args, "abstain_below", None),
    }
    if getattr(args, "no_rerank", False):
        changes |= {"rerank_relation_weight": 0.0, "rerank_name_weight": 0.0, "use_ranker": False}
    if getattr(args, "no_ranker", False):
        changes["use_ranker"] = False
    return DecodeOptions.from_training_info(read_training_info(source) if source.is_dir() else {}, **changes)


def add_search_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        help="best_first: kgqa's exact top-k search over the index (default); beam: transformers' beam search",
    )
    parser.add_argument(
        "--search-margin",
        type=float,
        help="best_first with the learned ranker: past top_k, paths more than this many nats below a question's "
        "best are not looked for (0: the exact top k; default: the model's)",
    )


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a confidence between 0 and 1")
    return value


def add_abstain_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--abstain-below",
        type=_confidence,
        metavar="P",
        help="the KB does not hold an answer whose confidence is below P (default: the threshold the model's "
        "confidence was fit with; 0: never abstain)",
    )


def add_quantize_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", action="store_true", help="int8 Linear layers (CPU): faster decoding")


def _cmd_train(args: argparse.Namespace) -> int:
    from kgqa.model.train.trainer import TrainConfig, train

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
    from kgqa.data import read_questions
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.evaluate import evaluate_file, evaluate_mix, format_metrics, format_mix, is_mix

    answerer = QuestionAnswerer.load(args.model, args.index, decode_options(args), quantize=args.quantize)
    if is_mix(read_questions(args.qa)):
        plot = args.plot or (Path(args.json).with_suffix(".png") if args.json else None)
        result = {"label": args.label} | evaluate_mix(answerer, args.qa, _workers(args, answerer), args.out, plot)
        print(format_mix(result))
        print(
            f"{result['questions']:,} questions {result['counts']} in {result['seconds']:.1f} s; abstaining below "
            f"confidence {result['threshold']}" + (f"; risk-coverage plot {plot}" if plot else "")
        )
        write_json(args.json, result)
        return 0
    result = {"label": args.label} | evaluate_file(
        answerer, args.qa, skip=args.skip, limit=args.limit, predictions_out=args.out, workers=_workers(args, answerer)
    )
    print(format_metrics(result))
    print(f"{result['questions']:,} questions in {result['seconds']:.1f} s ({result['questions_per_second']:.1f}/s)")
    write_json(args.json, result)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from kgqa.model.candidate import top_predictions
    from kgqa.model.evaluate import predict_file
    from kgqa.model.rank.confidence import ConfidenceModel

    options = decode_options(args)
    threshold = None
    if args.abstain:
        threshold = (
            options.abstain_below if options.abstain_below is not None else ConfidenceModel.threshold_of(args.model)
        )
        if threshold is None or not options.use_ranker:
            print(
                f"kgqa: error: --abstain needs the confidence of the model's learned ranker; {args.model} has none "
                "(fit it with `make confidence`)"
                if threshold is None
                else "kgqa: error: --abstain needs the ranker",
                file=sys.stderr,
            )
            return 2
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
        from kgqa.model.workers import answer_in_workers

        answerer = QuestionAnswerer.load(args.model, args.index, options, quantize=args.quantize)
        workers = _workers(args, answerer)

        def answer_all(questions: list[str]) -> list:
            return top_predictions(answer_in_workers(answerer, questions, workers, progress=True))

    count, unanswered, abstained = predict_file(answer_all, args.qa, args.out, args.shard, threshold)
    shard = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard else ""
    notes = [f"{unanswered} with no KB path"] if unanswered else []
    if threshold is not None:
        notes.append(f"{abstained} below confidence {threshold}: the KB does not hold them")
    print(f"wrote {count:,} answers{shard} to {args.out}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


def _worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes, 0 for one per CPU")
    return int(text)


def _workers(args: argparse.Namespace, answerer: QuestionAnswerer) -> int:
    from kgqa.model.workers import default_workers

    return args.workers or default_workers(answerer)


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
    from kgqa.model.train.tune import record_tuning, tune_decoding

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
    threshold = answerer.abstain_below
    for question, candidates in zip(
        args.questions, answerer.answer(args.questions, top_k=args.top_k, explain=True), strict=True
    ):
        print(question)
        if not candidates:
            print("  (no KB path fits this question)")
        elif threshold is not None and candidates[0].abstains(threshold):
            print(
                f"  the KB does not hold this: confidence {candidates[0].confidence:.3f} is below {threshold:g}; "
                "the nearest candidates:"
            )
        elif candidates[0].confidence is not None:
            print(f"  answer: {candidates[0].object}  (confidence {candidates[0].confidence:.3f})")
        for c in candidates:
            print(
                f"  path p={c.path_probability:.3f} score={c.score:+.2f}  {c.subject} ||| {c.relation} ||| {c.object}"
            )
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


def add_model_commands(commands: argparse._SubParsersAction, default_index: Path) -> None:
    _add_train(commands, default_index)
    _add_evaluate_and_predict(commands, default_index)
    _add_tune(commands, default_index)
    _add_ask(commands, default_index)
    _add_baseline(commands, default_index)


def _add_train(commands: argparse._SubParsersAction, default_index: Path) -> None:
    from kgqa.model.train.config import TrainConfig

    default = {f.name: f.default for f in fields(TrainConfig)}
    tr = commands.add_parser("train", help="train a model (from scratch, or --init a local seq2seq checkpoint)")
    tr.add_argument("--index", type=Path, default=default_index, help="KB index (%(default)s)")
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


def _add_evaluate_and_predict(commands: argparse._SubParsersAction, default_index: Path) -> None:
    for name, run, text in (
        ("evaluate", _cmd_evaluate, "KgCLUE's official metrics of a model on a question file"),
        ("predict", _cmd_predict, "answers in KgCLUE's submission format"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--model", type=Path, required=True)
        sub.add_argument("--index", type=Path, default=default_index)
        sub.add_argument("--qa", type=Path, required=True, help="KgCLUE question file")
        sub.add_argument("--beams", type=int, default=DEFAULT_BEAMS)
        add_search_flag(sub)
        sub.add_argument("--batch-size", type=int, default=DecodeOptions.batch_size)
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
        sub.add_argument(
            "--workers",
            type=_worker_count,
            default=0,
            help="processes answering batches, one torch thread each (0, the default: one per CPU, at most 8)",
        )
        add_abstain_flag(sub)
        if name == "evaluate":
            sub.add_argument("--json", type=Path, help="write the metrics and timing as JSON")
            sub.add_argument(
                "--plot",
                type=Path,
                help="a file with unanswerable questions: the risk-coverage plot (default: beside --json)",
            )
            sub.add_argument("--label", help="name of this system in the JSON (for `kgqa bench table`)")
            sub.add_argument("--out", type=Path, help="also write the predictions (submission format)")
            sub.add_argument("--skip", type=int, default=0, help="leave out the first N questions")
            sub.add_argument("--limit", type=int, help="at most N questions (after --skip)")
        else:
            sub.add_argument("--out", type=Path, required=True, help='JSON lines {"id", "answer": "S ||| P ||| O"}')
            sub.add_argument(
                "--abstain",
                action="store_true",
                help='"answer": "" where the confidence is below the threshold, and a "confidence" on every line '
                "(without it: KgCLUE's submission format, one answer a question)",
            )
            _add_engine_flags(sub)
        sub.set_defaults(run=run)


def _add_tune(commands: argparse._SubParsersAction, default_index: Path) -> None:
    tune = commands.add_parser(
        "tune", help="choose the look-ahead strength and re-ranking weights on a slice of questions"
    )
    tune.add_argument("--model", type=Path, required=True)
    tune.add_argument("--index", type=Path, default=default_index)
    tune.add_argument("--qa", type=Path, required=True)
    tune.add_argument("--start", type=int, default=0)
    tune.add_argument("--stop", type=int, default=1000)
    tune.add_argument("--beams", type=int, default=DEFAULT_BEAMS)
    tune.add_argument("--strengths", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    tune.add_argument("--relation-weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0, 8.0])
    tune.add_argument("--name-weights", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    tune.set_defaults(run=_cmd_tune)


def _add_ask(commands: argparse._SubParsersAction, default_index: Path) -> None:
    ask = commands.add_parser("ask", help="answer questions given on the command line")
    ask.add_argument("questions", nargs="+")
    ask.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    ask.add_argument("--index", type=Path, default=default_index)
    ask.add_argument("--top-k", type=int, default=1)
    ask.add_argument("--beams", type=int, default=DEFAULT_BEAMS)
    add_search_flag(ask)
    ask.add_argument("--no-ranker", action="store_true", help="not the learned ranker (the beam, re-ranked)")
    add_quantize_flag(ask)
    add_abstain_flag(ask)
    unset = {"unconstrained": False, "no_lookahead": False, "lookahead_strength": None}
    ask.set_defaults(run=_cmd_ask, batch_size=DecodeOptions.batch_size, **unset)


def _add_baseline(commands: argparse._SubParsersAction, default_index: Path) -> None:
    base = commands.add_parser("baseline", help="the no-learning peer: longest KB name, then closest relation")
    base.add_argument("--index", type=Path, default=default_index)
    base.add_argument("--qa", type=Path, required=True)
    base.add_argument("--json", type=Path)
    base.add_argument("--out", type=Path, help="also write the predictions (submission format)")
    base.add_argument("--skip", type=int, default=0)
    base.add_argument("--limit", type=int)
    base.add_argument("--label", help="name of this system in the JSON (for `kgqa bench table`)")
    base.set_defaults(run=_cmd_baseline)
