"""The model's commands: ``kgqa train``, ``baseline``, ``tune``, ``ask`` (``evaluate`` and ``predict`` are in
``batch_commands``, the flags they share in ``flags``). torch loads only when a command runs."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from kgqa.data.report import write_json
from kgqa.model.flags import add_abstain_flag, add_runtime_flags, add_search_flag, decode_options
from kgqa.model.options import DEFAULT_BEAMS, DecodeOptions  # light: torch loads only when a command decodes


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
    from kgqa.model.checkpoint import TRAINING_INFO_FILE
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

    answerer = QuestionAnswerer.load(
        args.model, args.index, decode_options(args), quantize=args.quantize, runtime=args.runtime
    )
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


def add_model_commands(commands: argparse._SubParsersAction, default_index: Path) -> None:
    _add_train(commands, default_index)
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
    add_runtime_flags(ask)
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
