"""What the detector page and its HTTP API compute, apart from the web framework (app.py holds the Gradio part).

Everything is scored by predict.py's path (the model's normalisation, windows and machine label, averaged); uploads
are read by predict.py's reader and written as its rows. A page text is scored by `score_windows`, the same call
with each window laid over the text, so the page can shade the passages that drive the score.
"""

from __future__ import annotations

import html
import logging
import math
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import predict
import train
from data_loaders import FileReport, has_lone_surrogate, labels_of, normalize_text, read_objects
from m4_training import demo, evaluation, reports, scoring
from m4_training.cli import UserError, require, setting
from m4_training.files import read_json, write_jsonl
from m4_training.train_args import DEMO_DEFAULTS

logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".txt", ".jsonl", ".csv")
MACHINE_RGB = "220,38,38"
MAX_SHADE_ALPHA = 0.6  # darker red would hide black text
LONE_SURROGATE_MESSAGE = (
    "The text holds half of a UTF-16 surrogate pair (a code point U+D800-U+DFFF on its own), which is not a "
    "character and cannot be scored; predict.py skips such a row (lone_surrogate). Remove it and score again."
)
DEMO_MODEL_DIR = DEMO_DEFAULTS["output_dir"]


@dataclass
class AppArguments:
    model_path: str | None = setting(
        None,
        "output directory of train.py (or one of its checkpoint-N), or any sequence-classification model "
        "directory or hub id (or use --demo)",
    )
    demo: bool = setting(
        False, f"serve the demo model in {DEMO_MODEL_DIR}/, training it first (train.py --demo) if it has none"
    )
    host: str = setting("127.0.0.1", "address to listen on; 0.0.0.0 opens the page to the network")
    port: int = setting(7860, "port to listen on")
    max_chars: int = setting(200_000, "most characters of one page text or API call")
    max_upload_mb: float = setting(2.0, "largest file the page scores, in MB")
    max_batch_size: int = setting(8, "requests the queue merges into one scoring batch")
    batch_size: int = setting(64, "chunks per forward pass, across the texts of a batch")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting("auto", "GPU autocast")
    short_text_tokens: int = setting(50, "texts with fewer tokens get a 'too short to judge reliably' note")
    machine_label: str | None = setting(
        None,
        "a model without training_config.json: the id2label name of its machine class (default: found from "
        "names such as machine, ai, fake, generated, chatgpt, LABEL_1)",
    )
    max_length: int | None = setting(
        None,
        "a model without training_config.json: tokens per window (default: the model's positions, at most "
        f"{scoring.EXTERNAL_MAX_LENGTH})",
    )

    def __post_init__(self) -> None:
        if self.demo and self.model_path:
            raise UserError(f"--demo serves {DEMO_MODEL_DIR}/; give --model_path or --demo, not both")
        if not self.demo and not self.model_path:
            raise UserError("give --model_path DIR (an output directory of train.py) or --demo")
        require(1 <= self.port <= 65535, "port", "between 1 and 65535", self.port)
        require(self.max_chars >= 1, "max_chars", "at least 1", self.max_chars)
        # NaN fails every comparison.
        require(0 < self.max_upload_mb < math.inf, "max_upload_mb", "a positive number", self.max_upload_mb)
        require(self.max_batch_size >= 1, "max_batch_size", "at least 1", self.max_batch_size)
        require(self.batch_size >= 1, "batch_size", "at least 1", self.batch_size)
        require(self.short_text_tokens >= 0, "short_text_tokens", "at least 0", self.short_text_tokens)
        require(self.max_length is None or self.max_length >= 2, "max_length", "at least 2", self.max_length)
        if ":" in self.host and not self.host.startswith("["):  # an IPv6 address goes into URLs in brackets
            self.host = f"[{self.host}]"


def demo_model_dir(directory: str | Path = DEMO_MODEL_DIR) -> Path:
    """The demo model, trained first with `train.py --demo` defaults when `directory` holds no finished run."""
    directory = Path(directory)
    if not (directory / "metrics.json").is_file():  # written last by train.py: the mark of a finished run
        logger.info("No finished demo model in %s: training it (train.py --demo, about a minute on a CPU)", directory)
        if (code := train.main(["--demo", "--output_dir", str(directory)])) != 0:
            raise UserError(f"training the demo model failed (train.py --demo exited with {code})", code)
    return directory


def example_texts(seed: int = 11) -> dict[str, str]:
    """Texts to try, written by the demo sample's generator (no text from elsewhere)."""
    rng = random.Random(seed)  # the texts are drawn in this order, so a seed always gives the same four
    return {
        "Short human post": demo.synthetic_text(rng, "bird migration", None, 3),
        "Short machine paragraph": demo.synthetic_text(rng, "solar wind", "chatgpt", 3),
        "Long machine-written text": demo.synthetic_text(rng, "coral reefs", "davinci", 40),
        "Human text with a machine-written middle": " ".join(
            demo.synthetic_text(rng, "rail networks", generator, 14) for generator in (None, "dolly", None)
        ),
    }


@dataclass
class TextResult:
    """What the page shows for one text: a message instead of a result when it was not scored."""

    message: str | None = None
    prob_machine: float | None = None
    label: str | None = None
    windows: scoring.WindowScores | None = None
    display_text: str = ""  # the scored text with its original digits (same length: digits map one to one)
    too_short: bool = False


MAX_ID_CHARS = 256  # an API item's id is echoed back: a bounded one
API_ITEM_KEYS = ("id", "text", "label", "domain", "generator")  # what an API item may carry through


class DetectorService:
    """A loaded detector and the app's settings: scores page texts, API requests and uploaded files."""

    def __init__(self, detector: scoring.Detector, settings: AppArguments) -> None:
        self.detector = detector
        self.settings = settings
        self.threshold = detector.threshold
        self.dtype = scoring.autocast_dtype(settings.precision)
        # predict.py's settings, so uploads and API calls are read and scored exactly as predict.py does.
        self.predict_args = predict.PredictArguments(
            model_path=[str(detector.path)], input="-", batch_size=settings.batch_size, precision=settings.precision
        )
        self.reading = predict.Reading.for_detectors([detector], self.predict_args)
        # Uploads' predictions live here while the page runs; the folder goes when the server stops, however.
        self.workdir = tempfile.TemporaryDirectory(prefix="m4-detector-app-")

    def __enter__(self) -> DetectorService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.workdir.cleanup()

    def too_long(self, n_chars: int) -> str | None:
        if n_chars > self.settings.max_chars:
            return (
                f"The input has {n_chars:,} characters; this server scores at most {self.settings.max_chars:,} "
                "in one request (app.py --max_chars). Split it, or score the file with predict.py."
            )
        return None

    def display_text(self, text: str) -> str:
        """The text the page shades: as the model saw it but with its digits, so the windows' offsets fit it."""
        normalization = self.detector.normalization
        return text if normalization is None else normalize_text(text, normalization._replace(digits=False))

    def score_page_texts(self, texts: Sequence[str]) -> list[TextResult]:
        """One result per text; the texts that can be scored share one `score_windows` call."""
        results = [TextResult() for _ in texts]
        todo = []
        for i, text in enumerate(texts):
            text = text or ""
            if not text.strip():
                results[i].message = "Type or paste a text, or pick an example, then press Score."
            elif message := self.too_long(len(text)):
                results[i].message = message
            elif has_lone_surrogate(text):
                results[i].message = LONE_SURROGATE_MESSAGE
            else:
                todo.append(i)
        normalised = [self.detector.normalize(texts[i]) for i in todo]
        scored = scoring.score_windows(self.detector, normalised, self.settings.batch_size, self.dtype) if todo else []
        for i, windows in zip(todo, scored):
            results[i] = TextResult(
                prob_machine=windows.prob_machine,
                label=evaluation.label_name(windows.prob_machine >= self.threshold),
                windows=windows,
                display_text=self.display_text(texts[i]),
                too_short=windows.n_tokens < self.settings.short_text_tokens,
            )
        return results

    def score_requests(self, requests: Sequence[Any]) -> list[list[dict[str, Any]] | dict[str, str]]:
        """Each request (a list of texts, or of JSONL-style objects with `text`) -> predict.py's rows for it, read as
        predict.py reads a JSONL file of its items (a row's `id` is the item's own or its position from 1; an empty
        text is skipped). The valid requests are scored together, so concurrent callers share forward passes; a
        refused request gets {"error": ...}."""
        results: list[Any] = [None] * len(requests)
        documents = []
        for i, request in enumerate(requests):
            try:
                documents.append((i, *self._request_documents(request)))
            except UserError as error:
                results[i] = {"error": str(error)}
        if documents:
            merged = pd.concat([frame for _, frame, _ in documents], ignore_index=True)
            predictions = predict.score_documents(merged, self.detector, self.predict_args)
            start = 0
            for i, frame, report in documents:
                rows = evaluation.prediction_rows(predictions.iloc[start : start + len(frame)], self.threshold)
                # A skipped item is answered too (as an upload counts it), after the scored ones.
                skipped = sorted((line, reason) for reason, lines in report.skipped_lines.items() for line in lines)
                results[i] = rows + [{"item": line, "skipped": reason} for line, reason in skipped]
                start += len(frame)
        return results

    def _request_documents(self, request: Any) -> tuple[pd.DataFrame, FileReport]:
        if not isinstance(request, list) or not request:
            raise UserError('send a non-empty JSON list of texts: {"data": [["first text", "second text"]]}')
        items = []
        for position, item in enumerate(request, start=1):
            if isinstance(item, str):
                item = {"text": item}
            if not isinstance(item, dict) or not isinstance(item.get("text"), str):
                raise UserError(f"item {position} is neither a text nor an object with a `text` string")
            item_id = item.get("id", position)
            if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or len(str(item_id)) > MAX_ID_CHARS:
                raise UserError(
                    f"item {position}: `id` must be a string or an integer of at most {MAX_ID_CHARS} characters"
                )
            # Only `text` is scored: other text fields (an M4 row's human_text/machine_text) are not read.
            items.append({key: item[key] for key in API_ITEM_KEYS if key in item})
        if message := self.too_long(sum(len(item["text"]) for item in items)):
            raise UserError(message)
        documents, report = read_objects(items, "request", self.reading.normalization, self.reading.normalize)
        return documents.assign(label=labels_of(documents, required=False)), report

    def score_upload(self, path: str | Path) -> tuple[list[dict[str, Any]], Path, dict[str, int]]:
        """predict.py's rows for an uploaded file, the predictions JSONL predict.py --output would write, and the
        rows skipped by reason (as predict.py skips and counts them)."""
        path = Path(path)
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise UserError(f"{path.name}: unsupported file type; upload {', '.join(UPLOAD_SUFFIXES)}")
        size_mb = path.stat().st_size / 1e6
        if size_mb > self.settings.max_upload_mb:
            raise UserError(
                f"{path.name} is {size_mb:.1f} MB; the page takes files up to {self.settings.max_upload_mb:g} MB "
                "(app.py --max_upload_mb); score larger files with predict.py"
            )
        try:
            documents, skipped = predict.read_counting_skips(str(path), "auto", self.reading, self.predict_args)
        except UserError as error:  # named as the user knows the file, not by the server's copy of it
            raise UserError(f"{path.name}: " + str(error).removeprefix(f"{path}: ")) from error
        predictions = predict.score_documents(documents, self.detector, self.predict_args, self.reading)
        rows = evaluation.prediction_rows(predictions, self.threshold)
        output = Path(tempfile.mkdtemp(dir=self.workdir.name)) / f"{path.stem}.predictions.jsonl"
        write_jsonl(output, rows)
        return rows, output, skipped


def shading_segments(windows: scoring.WindowScores) -> list[tuple[int, int, float]]:
    """(start, end, P(machine)) character ranges covering the whole text; each token takes the mean over the
    windows covering it, and neighbours with the same value form one range (gaps go to the token before)."""
    n_chars = len(windows.text)
    if not windows.n_tokens:
        return [(0, n_chars, windows.prob_machine)] if n_chars else []
    probs = windows.token_probs()
    starts = np.maximum.accumulate(windows.token_spans[:, 0])
    first = np.flatnonzero(np.r_[True, probs[1:] != probs[:-1]])
    bounds = [0, *starts[first[1:]].tolist(), n_chars]
    return [(a, b, float(probs[k])) for a, b, k in zip(bounds[:-1], bounds[1:], first) if b > a]


def _shade(prob: float) -> str:
    return f"rgba({MACHINE_RGB},{MAX_SHADE_ALPHA * prob:.3f})"


DEMO_MODEL_NOTE = (
    "This is the demo model, trained for seconds on the project's toy sample: it calls most realistic human text "
    "machine. Train on real data (README) before trusting a verdict."
)


def result_html(result: TextResult, threshold: float, short_text_tokens: int, demo_model: bool = False) -> str:
    if result.message:
        return f'<div id="m4-result" class="m4-message">{html.escape(result.message)}</div>'
    windows = result.windows
    n_windows = len(windows.window_probs)
    note = ""
    if result.too_short:
        note = (
            f'<p class="m4-short">Too short to judge reliably: {windows.n_tokens} tokens (under '
            f"{short_text_tokens}). Short texts carry little signal; treat this score as a guess.</p>"
        )
    if demo_model:
        note += f'<p class="m4-demo-note">{DEMO_MODEL_NOTE}</p>'
    return (
        f'<div id="m4-result" data-prob="{result.prob_machine!r}" data-label="{result.label}">'
        f'<div class="m4-verdict m4-{result.label}">{result.label}</div>'
        f'<p>P(machine) <b class="m4-prob">{result.prob_machine:.4f}</b> · threshold {threshold:.4f} · '
        f'<span class="m4-windows">{n_windows}</span> window{"s" if n_windows != 1 else ""} · '
        f"{windows.n_tokens} tokens</p>{note}"
        '<p class="m4-strip">P(machine) of each window, in order: '
        + "".join(f'<span style="background:{_shade(p)}">{p:.2f}</span>' for p in windows.window_probs)
        + "</p></div>"
    )


def shaded_html(result: TextResult, threshold: float) -> str:
    """The text with every passage shaded by P(machine), a legend, and the table of windows."""
    # Not gr.HighlightedText (Gradio 6.31): it lays each (text, score) pair out as its own flex box with
    # word-break: break-all, so every passage starts a new line and words split mid-word; undone by CSS on its inner
    # classes, it still puts a space between passages (the text shown is not the text scored), its legend runs
    # from -1 to +1, and a passage cannot show its P(machine).
    if result.windows is None:
        return ""
    windows = result.windows
    spans = "".join(
        f'<span class="m4-w" style="background:{_shade(prob)}" title="P(machine) {prob:.3f}">'
        f"{html.escape(result.display_text[start:end])}</span>"
        for start, end, prob in shading_segments(windows)
    )
    ticks = "".join(f'<span style="background:{_shade(p)}">{p:.1f}</span>' for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
    rows = "".join(
        f"<tr><td>{i}</td><td>{start}–{end}</td><td>{prob:.3f}</td><td>{evaluation.label_name(prob >= threshold)}"
        "</td></tr>"
        for i, ((start, end), prob) in enumerate(zip(windows.window_tokens.tolist(), windows.window_probs), start=1)
    )
    return (
        '<div class="m4-legend">Shading: each token by the mean P(machine) of the windows covering it '
        f"{ticks}</div>"
        f'<div id="m4-shaded" class="m4-shaded">{spans}</div>'
        f"<details><summary>The {len(windows.window_probs)} windows (tokens, P(machine))</summary>"
        '<table class="m4-windows-table"><tr><th>window</th><th>tokens</th><th>P(machine)</th><th>alone</th></tr>'
        f"{rows}</table></details>"
    )


PAGE_CSS = """
#m4-result .m4-verdict { font-size: 1.6em; font-weight: 700; text-transform: uppercase; }
#m4-result .m4-machine { color: rgb(185, 28, 28); }
#m4-result .m4-human { color: rgb(29, 78, 216); }
.m4-short { color: rgb(146, 64, 14); font-weight: 600; }
.m4-shaded { color: #111; background: #fff; line-height: 1.7; padding: 0.8em; border: 1px solid #ddd;
  border-radius: 6px; max-height: 32em; overflow-y: auto; white-space: pre-wrap; }
.m4-legend span, .m4-strip span { display: inline-block; padding: 0 0.4em; margin-left: 2px; color: #111;
  border: 1px solid #eee; }
.m4-windows-table td, .m4-windows-table th { padding: 0 0.8em; text-align: right; }
"""


def run_config(detector: scoring.Detector) -> dict[str, Any]:
    """training_config.json of the run the detector comes from ({} for a model not trained by train.py)."""
    path = Path(detector.path)
    checkpoint = detector.settings_from == scoring.RUN_OF_CHECKPOINT
    return read_json((path.parent if checkpoint else path) / scoring.TRAINING_CONFIG) or {}


def is_demo_model(detector: scoring.Detector) -> bool:
    """Trained by `train.py --demo`: on the toy sample, so its verdicts on real text mean little."""
    return bool(run_config(detector).get("arguments", {}).get("run", {}).get("demo"))


def model_description(detector: scoring.Detector) -> str:
    """The panel that says what the model is: its data, threshold, validation metrics and limits (Markdown)."""
    config = run_config(detector)
    arguments = config.get("arguments", {})
    metrics = {}
    if detector.settings_from == scoring.TRAINING_CONFIG:  # a run's metrics.json: its final model's, not a checkpoint's
        metrics = read_json(Path(detector.path) / "metrics.json") or config.get("final_metrics") or {}
    if detector.settings_from == scoring.MODEL_DEFAULTS:
        machine_label = detector.model.config.id2label[detector.machine_index]
        model = f", not trained by train.py (no training_config.json); its machine class is the label `{machine_label}`"
        normalisation = "texts scored as written (no normalisation)."
        target = ": the default for a model without training_config.json, chosen on no documents"
    else:
        base = arguments.get("model", {}).get("model")
        model = f", fine-tuned from `{base}`" if base else ""
        normalisation = "Unicode canonicalised, " if detector.normalization.unicode else ""
        normalisation += "whitespace normalised" + (", digits mapped to 0." if detector.normalization.digits else ".")
        target = ""
        if detector.target_fpr is not None:
            target = f", chosen for a false-positive rate of at most {detector.target_fpr:g} on the validation human "
            target += "documents of every domain"
            if detector.settings_from == scoring.RUN_OF_CHECKPOINT:
                target += " by the run this checkpoint belongs to (for its final model)"
    lines = [
        f"**Model** `{detector.path}`{model}.",
        f"Scored in windows of {detector.max_length} tokens ({detector.chunk_overlap} shared), averaged per text; "
        + normalisation,
        f"**Decision threshold** {detector.threshold:.4f} on P(machine){target}.",
    ]
    if "data_summary" in config:
        lines.append(
            "**Training data**: " + "\n\n".join(reports.training_data_lines(config["data_summary"], arguments))
        )
    if metrics.get("document"):
        keys = ("n", "accuracy", "f1_macro", "auroc", "fpr_human", "recall")
        points = [("at the threshold", metrics["document"]), ("at 0.5", metrics.get("document_at_0.5", {}))]
        header = ["", "n", "accuracy", "F1 (macro)", "AUROC", "FPR (human)", "recall (machine)"]
        table = reports.format_table(header, [[name, *(m.get(key) for key in keys)] for name, m in points], True)
        lines.append(f"**Validation metrics** (documents)\n\n{table}")
    else:
        lines.append("**Validation metrics**: none recorded for this model (no metrics.json in its directory).")
    if detector.target_fpr is not None:  # the limits of a model train.py trained (its card's last section)
        limits = reports.model_limits(detector.target_fpr)
        lines.append("**Intended use and limits**\n\n" + "\n".join(f"- {limit}" for limit in limits))
    return "\n\n".join(lines)
