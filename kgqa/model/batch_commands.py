"""The model's batch jobs: ``kgqa evaluate`` and ``kgqa predict`` over question files, in worker processes or on Ray.
torch loads only when a command runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from kgqa.data.report import write_json
from kgqa.model.flags import add_abstain_flag, add_runtime_flags, add_search_flag, decode_options
from kgqa.model.options import DEFAULT_BEAMS, DecodeOptions

if TYPE_CHECKING:
    from kgqa.model.answerer import QuestionAnswerer


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kgqa.data import read_questions
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.evaluate import evaluate_file, evaluate_mix, format_metrics, format_mix, is_mix

    mix = is_mix(read_questions(args.qa))
    # the confidence only where the report reads it
    options = replace(decode_options(args), confidence=mix)
    answerer = QuestionAnswerer.load(args.model, args.index, options, quantize=args.quantize, runtime=args.runtime)
    if mix:
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

    # the confidence only where the file shows it
    options = replace(decode_options(args), confidence=args.abstain)
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
                args.model,
                args.index,
                questions,
                options,
                args.quantize,
                address=args.address,
                actors=args.actors,
                runtime=args.runtime,
            )

    else:
        from kgqa.model.answerer import QuestionAnswerer
        from kgqa.model.workers import answer_in_workers

        answerer = QuestionAnswerer.load(args.model, args.index, options, quantize=args.quantize, runtime=args.runtime)
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


def add_batch_commands(commands: argparse._SubParsersAction, default_index: Path) -> None:
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
        add_runtime_flags(sub)
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
