"""Score documents with a detector: P(machine) per document, over all its chunks.

    python predict.py --model_path outputs/m4-detector --input texts.jsonl --output predictions.jsonl
    cat essay.txt | python predict.py --model_path outputs/m4-detector --input -
    python predict.py --model_path outputs/m4-detector --input M4_cleaned/data --domains arxiv \\
        --generators flant5 --eval --report_dir eval_flant5      # metrics, report.md and plots
    python predict.py --model_path outputs/m4-detector Hello-SimpleAI/chatgpt-detector-roberta \\
        --input test.jsonl --eval --report_dir comparison        # detectors side by side
    python predict.py --model_path outputs/m4-detector --input raid_test.csv --raid_submission submission.json

Inputs: JSONL with a `text` field (or M4 rows with human_text/machine_text; SemEval-2024 Task 8 subtask A rows:
source and model are the domain and generator), CSV with a `text` column, RAID's CSV (by its header or
--input_format raid: generation is the text, model `human` label 0, else 1; results also by decoding and attack),
a plain text file (one document), '-' for stdin, or an M4 data directory. A train.py output directory (or one of
its checkpoint-N) normalises and chunks texts with the settings saved in its training_config.json, so training and
prediction cannot disagree; any other sequence-classification model scores texts as written, in windows of its
positions, at threshold 0.5, with its machine class found from id2label (--machine_label to name it).
--raid_submission writes RAID's leaderboard JSON [{"id", "score"}] for one model. Every model's scores are
checked: NaN, constant, quantised to few values, or AUROC < 0.5 on labelled input each give a warning, a line of
`score_warnings` in metrics.json and of report.md.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import data_loaders
from data_loaders import RequestedNames, TextNormalization
from m4_training import cli, evaluation, reports, robustness, scoring
from m4_training.attacks import ATTACK_RATES
from m4_training.cli import UserError, arg_help, counted, require
from m4_training.files import check_output_dir, check_output_file, write_failure, write_json, write_jsonl
from m4_training.scoring import Detector, autocast_dtype, load_detector

logger = logging.getLogger("predict")

DEFAULT_TARGET_FPR = 0.05
# What predict.py --eval writes into --report_dir.
PREDICT_REPORT_FILES = (
    "metrics.json", "predictions.jsonl", "report.md", "confusion_matrix.png", "roc.png", "attacks.png"
)  # fmt: skip


@dataclass
class PredictArguments:
    model_path: list[str] = field(
        **arg_help(
            "output directory of train.py (or one of its checkpoint-N), or any sequence-classification model "
            "directory or hub id; several: scored side by side on the same documents"
        )
    )
    input: str = field(**arg_help("JSONL, CSV, .txt, an M4 data directory, or '-' (stdin)"))
    input_format: Literal["auto", "jsonl", "csv", "raid", "txt", "m4_dir"] = field(
        default="auto",
        **arg_help(
            "auto: by the suffix, else (stdin too) by how it starts: { JSONL, [{ JSON array, else text; a CSV with a "
            "generation column and a model column or no text column is read as RAID; raid: RAID's CSV layout"
        ),
    )
    output: str | None = field(
        default=None, **arg_help("JSONL of predictions (default: stdout; with --eval or --raid_submission: none)")
    )
    raid_submission: str | None = field(
        default=None,
        **arg_help("write the RAID leaderboard's JSON here: [{id, score}], score = P(machine); one --model_path"),
    )
    batch_size: int = field(default=64, **arg_help("chunks per forward pass, across documents"))
    threshold: float | None = field(
        default=None, **arg_help("decision threshold (default: the one chosen at training)")
    )
    aggregate: Literal["mean", "max"] = field(default="mean", **arg_help("over a document's chunks"))
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(default="auto", **arg_help("GPU autocast"))
    num_proc: int | None = field(default=None, **arg_help("processes for tokenisation"))
    domains: list[str] | None = field(
        default=None,
        **arg_help("M4 directory input: domains (default: the training run's)", aliases=["--train_domains"]),
    )
    generators: list[str] | None = field(
        default=None,
        **arg_help("M4 directory input: generators (default: the training run's)", aliases=["--train_generators"]),
    )
    reddit_file: str | None = field(default=None, **arg_help("M4 directory input: add this file's human posts"))
    eval: bool = field(default=False, **arg_help("labelled input: write metrics, report and plots"))
    report_dir: str = field(default="eval_report", **arg_help("where --eval writes"))
    baseline_train: str | None = field(
        default=None, **arg_help("labelled input to fit the TF-IDF baseline on, for a side-by-side comparison")
    )
    attacks: list[str] | None = field(
        default=None,
        **arg_help(
            "--eval: score every document also under these RAID attacks (NAME or NAME=RATE; 'all'), at thresholds "
            "set on the clean human documents: " + ", ".join(ATTACK_RATES)
        ),
    )
    synonym_model: str | None = field(default=None, **arg_help("fill-mask model of the synonym attack (any masked LM)"))
    paraphrase_model: str | None = field(
        default=None, **arg_help("seq2seq model of the paraphrase attack (RAID used DIPPER: a GPU pod's job)")
    )
    attack_seed: int = field(default=0, **arg_help("seed of the attacks' edits (each document's own)"))
    machine_label: list[str] | None = field(
        default=None,
        **arg_help(
            "models without training_config.json: the id2label name of the machine class (default: found from "
            "names such as machine, ai, fake, generated, chatgpt, LABEL_1); one for all models or one per "
            "--model_path ('auto' to detect)"
        ),
    )
    max_length: int | None = field(
        default=None,
        **arg_help(
            "models without training_config.json: tokens per window (default: the model's positions, at most "
            f"{scoring.EXTERNAL_MAX_LENGTH})"
        ),
    )

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        require(self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "in [0, 1]", self.threshold)
        require(self.max_length is None or self.max_length >= 2, "max_length", "at least 2", self.max_length)
        self.num_proc = cli.capped_num_proc(self.num_proc)
        if self.baseline_train and not self.eval:
            raise UserError("--baseline_train is used only with --eval")
        if self.attacks and not self.eval:
            raise UserError("--attacks is used only with --eval (it needs labelled documents)")
        self.attack_rates = robustness.parse_attacks(
            self.attacks or [], "--attacks", self.synonym_model, self.paraphrase_model
        )
        if self.raid_submission and len(self.model_path) > 1:
            raise UserError(
                f"--raid_submission holds one model's scores; give one --model_path (got {len(self.model_path)})"
            )
        if self.machine_label and len(self.machine_label) not in (1, len(self.model_path)):
            raise UserError(
                f"--machine_label takes one name for every model or one per --model_path ({len(self.model_path)}), "
                f"got {len(self.machine_label)}"
            )

        outputs = {"--output": self.output, "--raid_submission": self.raid_submission}
        inputs = {"--model_path": list(filter(cli.local_directory, self.model_path)), "--input": self.input}
        inputs |= {"--baseline_train": self.baseline_train, "--reddit_file": self.reddit_file}
        cli.check_output_paths(outputs | {"--report_dir": self.report_dir if self.eval else None}, inputs)
        for flag, path in (("--output", self.output), ("--raid_submission", self.raid_submission)):
            written_by_eval = self.eval and path and Path(path).name in PREDICT_REPORT_FILES
            if written_by_eval and Path(path).resolve().parent == Path(self.report_dir).resolve():
                raise UserError(f"{flag} {path} is a file that --eval writes in --report_dir; choose another {flag}")

    def machine_label_for(self, index: int) -> str | None:
        """The --machine_label of the index-th --model_path (None: detect it from id2label)."""
        if not self.machine_label:
            return None
        name = self.machine_label[0 if len(self.machine_label) == 1 else index]
        return None if name.lower() == "auto" else name


def parse_predict_args(argv: list[str] | None = None, description: str | None = None) -> PredictArguments:
    parser = cli.CommandLineParser([PredictArguments], prog="predict.py", description=description)
    return parser.parse_dataclasses(argv)[0]


@dataclass(frozen=True)
class Reading:
    """How the input is read: the normalisation every model shares (each model then applies the rest of its own)."""

    normalize: bool
    normalization: TextNormalization
    domains: list[str] | None
    generators: list[str] | None
    # An M4 directory's names given with --domains/--generators must each match a file; the training run's lists
    # are a default, of which a directory may hold only some.
    must_match: tuple[RequestedNames, ...] = ()

    @classmethod
    def for_detectors(cls, detectors: list[Detector], args: PredictArguments) -> Reading:
        normalize = all(d.normalization is not None for d in detectors)
        shared = TextNormalization(
            digits=normalize and all(d.normalization.digits for d in detectors),
            unicode=normalize and all(d.normalization.unicode for d in detectors),
        )
        domains, generators = training_selection(detectors)
        requested = {"domains": args.domains, "generators": args.generators}
        must_match = tuple(RequestedNames(f"--{kind}", kind, names) for kind, names in requested.items() if names)
        return cls(normalize, shared, args.domains or domains, args.generators or generators, must_match)


def training_selection(detectors: list[Detector]) -> tuple[list[str] | None, list[str] | None]:
    """The M4 domains and generators of the first training run among the detectors (None: no such run)."""
    domains = next((d.domains for d in detectors if d.domains), None)
    generators = next((d.generators for d in detectors if d.generators), None)
    return domains, generators


@dataclass
class ScoredModel:
    name: str
    path: str
    detector: Detector
    threshold: float
    predictions: pd.DataFrame
    score_warnings: list[str]


def model_names(paths: list[str]) -> list[str]:
    """A short name per --model_path for reports: the directory (run/checkpoint-N for a checkpoint) or hub id."""
    names = []
    for path in paths:
        local = Path(path)
        name = local.name if local.is_dir() else path
        if local.is_dir() and name.startswith("checkpoint-"):
            name = f"{local.resolve().parent.name}/{name}"
        names.append(name if name not in names else f"{name} ({len(names) + 1})")
    return names


def score_documents(
    documents: pd.DataFrame, detector: Detector, args: PredictArguments, reading: Reading | None = None
) -> pd.DataFrame:
    """Every document's `prob_machine` and `n_chunks` over chunks scored in batches that mix documents."""
    texts = documents["text"].tolist()
    # The reader applied the normalisation every model shares; a model trained with more applies its own.
    if reading is not None and (reading.normalization if reading.normalize else None) != detector.normalization:
        texts = [detector.normalize(text) for text in texts]
    scored, _, _ = detector.score(texts, args.batch_size, autocast_dtype(args.precision), args.aggregate, args.num_proc)
    return documents.drop(columns=["text", "line"], errors="ignore").assign(
        prob_machine=scored["prob_machine"].to_numpy(), n_chunks=scored["n_chunks"].to_numpy()
    )


def threshold_source(detector: Detector, args: PredictArguments) -> str:
    """Where the decision threshold applied to a model came from, for metrics.json and the report."""
    if args.threshold is not None:
        return evaluation.THRESHOLD_GIVEN
    if detector.settings_from == scoring.TRAINING_CONFIG:
        return evaluation.THRESHOLD_FROM_TRAINING
    if detector.settings_from == scoring.RUN_OF_CHECKPOINT:
        return "the validation documents of this checkpoint's run (for its final model)"
    return evaluation.DEFAULT_THRESHOLD_SOURCE


def evaluate(
    predictions: pd.DataFrame, detector: Detector, threshold: float, chosen_on: str | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Metrics of labelled predictions at the model's threshold (and 0.5), with the baseline when present."""
    labelled = evaluation.fill_groups(predictions)
    target_fpr = detector.target_fpr if detector.target_fpr is not None else DEFAULT_TARGET_FPR
    return evaluation.evaluate_predictions(labelled, target_fpr, threshold, chosen_on=chosen_on), labelled


def read_counting_skips(
    source: str, input_format: str, reading: Reading, args: PredictArguments
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The documents with their `label` (0/1, <NA> where unknown; required by --eval), and the rows skipped by
    reason (logged as a warning too)."""
    documents, skipped = _read(source, input_format, reading, args.reddit_file, args.eval)
    try:
        labels = data_loaders.labels_of(documents, required=args.eval)
    except UserError as error:  # before the model runs
        raise UserError(f"--eval: {source}: {error}") from error
    return documents.assign(label=labels), skipped


def _read(
    source: str, input_format: str, reading: Reading, reddit_file: str | None = None, labels_required: bool = False
) -> tuple[pd.DataFrame, dict[str, int]]:
    """`data_loaders.read_documents` as `reading` says (its fields are that function's arguments), and the rows
    skipped by reason (logged as a warning too)."""
    documents, report = data_loaders.read_documents(
        source, input_format, reddit_file=reddit_file, labels_required=labels_required, **vars(reading)
    )
    skipped = dict(report.skipped) if report is not None else {}
    if skipped:
        logger.warning("%s: %s skipped: %s", report.path, counted(sum(skipped.values()), "row"), skipped)
    return documents, skipped


def baseline_probs(
    args: PredictArguments, reading: Reading, detectors: list[Detector], documents: pd.DataFrame
) -> np.ndarray:
    """The TF-IDF baseline fitted on --baseline_train, scored on the documents; run before the models, so a bad
    --baseline_train stops the run before any scoring. It is read with the documents' normalisation; --domains,
    --generators and --reddit_file select --input only (an M4 directory there: the training run's selection)."""
    domains, generators = training_selection(detectors)  # a default: none of them must match a file
    baseline_reading = replace(reading, domains=domains, generators=generators, must_match=())
    try:
        train, _ = _read(args.baseline_train, "auto", baseline_reading)
        labels = data_loaders.labels_of(train)
    except UserError as error:
        message = str(error).removeprefix(f"{args.baseline_train}: ")
        raise UserError(f"--baseline_train {args.baseline_train}: {message}") from error
    # A baseline fitted on the documents it then scores would look better than it is: they leave its training data.
    scored = train["text"].isin(set(documents["text"]))
    flag, removed = f"--baseline_train {args.baseline_train}", counted(int(scored.sum()), "document")
    if scored.any():
        logger.warning("%s: removed %s also in --input (the baseline is not fitted on what it scores)", flag, removed)
    labels = labels[~scored]
    if labels.nunique() < 2:
        raise UserError(f"{flag}: needs human and machine documents not in --input ({removed} of it are in --input)")
    texts = train["text"][~scored].tolist()
    return evaluation.tfidf_baseline_probs(texts, labels.tolist(), documents["text"].tolist())


def predict(args: PredictArguments) -> int:
    if args.output not in (None, "-"):
        check_output_file(args.output, "--output")
    if args.raid_submission:
        check_output_file(args.raid_submission, "--raid_submission")
    if args.eval:
        check_output_dir(args.report_dir, "--report_dir")
    try:
        return score_and_write(args)
    except OSError as error:
        if message := write_failure(error, args.output if args.output not in (None, "-") else args.report_dir):
            raise UserError(message) from error
        raise


def score_and_write(args: PredictArguments) -> int:
    detectors = [
        load_detector(path, args.machine_label_for(i), args.max_length) for i, path in enumerate(args.model_path)
    ]
    reading = Reading.for_detectors(detectors, args)
    documents, _ = read_counting_skips(args.input, args.input_format, reading, args)
    for detector in detectors:  # every model's weights load before any scoring: a broken one stops the run now
        detector.model  # noqa: B018
    baseline = baseline_probs(args, reading, detectors, documents) if args.eval and args.baseline_train else None
    robustness.load_attack_models(args.attack_rates, args.synonym_model, args.paraphrase_model)
    models = []
    for name, path, detector in zip(model_names(args.model_path), args.model_path, detectors):
        threshold = detector.threshold if args.threshold is None else args.threshold
        predictions = score_documents(documents, detector, args, reading)
        models.append(ScoredModel(name, path, detector, threshold, predictions, score_sanity(name, predictions)))
        chunks = predictions["n_chunks"].sum()
        logger.info("%s: scored %d documents (%d chunks) at threshold %.4f", name, len(documents), chunks, threshold)
    with_baseline = {} if baseline is None else {evaluation.BASELINE_COLUMN: baseline}
    rows = []
    for model in models:
        name = model.name if len(models) > 1 else None
        rows += evaluation.prediction_rows(model.predictions.assign(**with_baseline), model.threshold, name)
    attacks = score_under_attacks(documents, models, reading, args) if args.attack_rates else {}
    if args.eval and len(models) == 1:
        evaluate_one(models[0], with_baseline, args, attacks)
    elif args.eval:
        compare(models, baseline, args, attacks)
    if args.eval:
        write_jsonl(Path(args.report_dir) / "predictions.jsonl", rows)
    if args.raid_submission:
        write_json(args.raid_submission, raid_submission(models[0].predictions))
    if args.output not in (None, "-"):
        write_jsonl(args.output, rows)
    elif args.output == "-" or not (args.eval or args.raid_submission):
        sys.stdout.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        sys.stdout.flush()  # here, where a reader that went away (`| head`) is handled, not at exit
    return 0


def score_under_attacks(
    documents: pd.DataFrame, models: list[ScoredModel], reading: Reading, args: PredictArguments
) -> dict[str, dict[str, Any]]:
    """--attacks: each model's metrics.json `attacks` (robustness.attack_metrics) on the documents attacked once."""
    texts = documents["text"].tolist()
    normalize = (lambda text: data_loaders.normalize_text(text, reading.normalization)) if reading.normalize else str
    attacked = robustness.attacked_texts(
        texts, documents["id"].astype(str).tolist(), args.attack_rates, args.attack_seed, normalize,
        args.synonym_model, args.paraphrase_model,
    )  # fmt: skip
    labels = documents["label"].to_numpy(dtype=np.int64)
    results = {}
    for model in models:
        if model.predictions["prob_machine"].isna().any():  # the score warnings say so; no threshold exists
            logger.warning("%s: not scored under attack (NaN scores)", model.name)
            continue
        probs = {
            name: score_documents(documents.assign(text=attacked_list), model.detector, args, reading)["prob_machine"]
            for name, (attacked_list, _) in attacked.items()
        }
        clean = model.predictions["prob_machine"].to_numpy()
        unchanged = {name: count for name, (_, count) in attacked.items()}
        results[model.name] = robustness.attack_metrics(
            labels, clean, probs, args.attack_rates, unchanged, model.threshold
        ) | {"seed": args.attack_seed}
        logger.info("%s: scored under %s", model.name, counted(len(attacked), "attack"))
    return results


def score_sanity(name: str, predictions: pd.DataFrame) -> list[str]:
    """The warnings about a model's scores (evaluation.score_warnings), each logged on one line; the wrong-way
    check needs every document labelled."""
    labels = predictions["label"]
    known = None if labels.isna().any() else labels.to_numpy(dtype="int64")
    warnings = evaluation.score_warnings(predictions["prob_machine"].to_numpy(), known)
    for warning in warnings:
        logger.warning("%s: %s", name, warning)
    return warnings


def raid_submission(predictions: pd.DataFrame) -> list[dict[str, Any]]:
    """RAID's leaderboard entries: each document's id as read and its P(machine) as `score` (null for NaN)."""
    scores = predictions["prob_machine"].astype(object).where(predictions["prob_machine"].notna(), None)
    return [{"id": doc_id, "score": score} for doc_id, score in zip(predictions["id"].tolist(), scores.tolist())]


def evaluate_one(
    model: ScoredModel, with_baseline: dict[str, np.ndarray], args: PredictArguments, attacks: dict[str, Any]
) -> None:
    """--eval with one model: metrics.json, report.md and the plots."""
    predictions = model.predictions.assign(**with_baseline)
    metrics, labelled = evaluate(predictions, model.detector, model.threshold, threshold_source(model.detector, args))
    metrics["score_warnings"] = model.score_warnings
    report_dir = Path(args.report_dir)
    if model.name in attacks:
        metrics["attacks"] = attacks[model.name]
    write_json(report_dir / "metrics.json", metrics)
    reports.write_report(report_dir, metrics, labelled, f"Evaluation of {model.path} on {args.input}")
    print(reports.format_metrics_summary(metrics), file=sys.stderr)
    if "attacks" in metrics:
        print("Under attack:\n" + reports.format_attack_summary(metrics["attacks"]), file=sys.stderr)


def compare(
    models: list[ScoredModel], baseline: np.ndarray | None, args: PredictArguments, attacks: dict[str, Any]
) -> None:
    """--eval with several models: one metrics.json, report.md and roc.png with a row and a curve per model."""
    results: dict[str, Any] = {}
    labelled = {}
    for model in models:
        detector, chosen_on = model.detector, threshold_source(model.detector, args)
        metrics, labelled[model.name] = evaluate(model.predictions, detector, model.threshold, chosen_on)
        results[model.name] = {
            "model_path": model.path,
            "settings_from": detector.settings_from,
            "window": {"max_length": detector.max_length, "chunk_overlap": detector.chunk_overlap},
            "normalized": detector.normalization is not None,
            "machine_label": detector.model.config.id2label[detector.machine_index],
            **metrics,
            "score_warnings": model.score_warnings,
        }
        if model.name in attacks:
            results[model.name]["attacks"] = attacks[model.name]
    comparison: dict[str, Any] = {"input": args.input, "models": results}
    first = next(iter(labelled.values()))
    if baseline is not None:
        target_fpr = next((m.detector.target_fpr for m in models if m.detector.target_fpr is not None), None)
        baseline_metrics = evaluation.evaluate_predictions(
            first.assign(prob_machine=baseline), target_fpr or DEFAULT_TARGET_FPR
        )
        comparison["baseline"] = {"name": evaluation.BASELINE_NAME, "model_path": args.baseline_train} | {
            key: baseline_metrics[key] for key in ("threshold", "document", "document_at_0.5")
        }
    report_dir = Path(args.report_dir)
    write_json(report_dir / "metrics.json", comparison)
    if attacks:
        robustness.write_attack_chart(report_dir / "attacks.png", attacks)
    probabilities = {name: frame["prob_machine"].to_numpy() for name, frame in labelled.items()}
    if baseline is not None:
        probabilities[evaluation.BASELINE_NAME] = np.asarray(baseline)
    title = f"Detectors compared on {args.input}"
    reports.write_comparison_report(report_dir, comparison, first["label"].to_numpy(), probabilities, title)
    print(reports.format_comparison_summary(comparison), file=sys.stderr)
    for name, attacked in attacks.items():
        print(f"{name} under attack:\n" + reports.format_attack_summary(attacked), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    cli.setup_logging()
    return cli.run_cli(lambda: predict(parse_predict_args(argv, description=__doc__)))


if __name__ == "__main__":
    sys.exit(main())
