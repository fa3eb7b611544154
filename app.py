"""The detector page and its HTTP API: paste a text or upload a file, see P(machine) and where it comes from.

    python app.py --model_path outputs/roberta-base        # then open http://127.0.0.1:7860
    python app.py --model_path openai-community/roberta-base-openai-detector   # any text-classification detector
    python app.py --demo                                   # the demo model (trained first if needed), offline

Texts are scored exactly as predict.py scores them (the model's normalisation, windows and threshold), and the
page shades every passage by the P(machine) of the windows covering it. The API takes a list of texts and returns
predict.py's rows (see the README's curl example); concurrent requests are batched by Gradio's queue. The server
listens on 127.0.0.1 unless --host says otherwise and never opens a public share link.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import datasets
import pandas as pd

from m4_training import serving
from m4_training.cli import CommandLineParser, UserError, counted, run_cli, setup_logging
from m4_training.scoring import load_detector
from m4_training.serving import AppArguments

logger = logging.getLogger("app")

API_NAME = "predict"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # the default theme would fetch web fonts
MONOSPACE_FONTS = ["ui-monospace", "Consolas", "monospace"]


def build_page(service: serving.DetectorService) -> Any:
    """The page (a gradio.Blocks) with its batched API endpoint."""
    import gradio as gr  # here, so that --help and a bad setting answer without loading the web framework

    settings = service.settings
    threshold = service.threshold
    demo_model = serving.is_demo_model(service.detector)
    examples = serving.example_texts() if demo_model else {}  # the toy sample's texts fit only the toy model
    # Every scoring event waits in one queue (one model); texts and API calls are scored in batches.
    queued = {"concurrency_id": "detector"}
    batched = {"batch": True, "max_batch_size": settings.max_batch_size, **queued}

    def score_texts(texts: list[str]) -> tuple[list[str], list[str]]:
        """Batched: Gradio passes the texts of up to --max_batch_size waiting requests at once."""
        results = service.score_page_texts(texts)
        return (
            [serving.result_html(r, threshold, settings.short_text_tokens, demo_model) for r in results],
            [serving.shaded_html(r, threshold) for r in results],
        )

    def score_file(path: str | None) -> tuple[pd.DataFrame | None, str | None, str]:
        if not path:
            return None, None, ""
        try:
            rows, output, skipped = service.score_upload(path)
        except UserError as error:
            return None, None, f"error: {error}"
        n_machine = sum(row["pred"] for row in rows)
        message = f"{len(rows)} documents scored, {n_machine} labelled machine."
        if skipped:
            counts = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()))
            message += f" {counted(sum(skipped.values()), 'row')} skipped ({counts}), as predict.py skips them."
        return pd.DataFrame(rows), str(output), message

    def predict_api(texts: list[Any]) -> list[dict[str, Any]]:
        """Score a list of texts (or of objects with a `text`, like predict.py's JSONL input): one row per text as
        predict.py writes it (id, prob_machine, pred, n_chunks, ...); {"error": ...} for a refused request.

        The type hints describe one request, as the API documents it; with batch=True Gradio calls this with the
        requests waiting in the queue and takes back a tuple holding one result per request.
        """
        n_items = sum(len(request) for request in texts if isinstance(request, list))
        logger.info("API batch of %d requests (%d items)", len(texts), n_items)
        return (service.score_requests(texts),)

    with gr.Blocks(title="Machine-generated text detector", analytics_enabled=False) as page:
        gr.Markdown(
            "# Machine-generated text detector\n"
            f"P(machine) of a text as `predict.py` computes it; label **machine** at P(machine) ≥ {threshold:.4f} "
            "(the threshold chosen at training). The shading shows which passages drive the score."
        )
        with gr.Tab("Text"):
            with gr.Row():
                with gr.Column(scale=3):
                    text = gr.Textbox(label="Text", lines=8, max_lines=10, elem_id="m4-text")
                    score = gr.Button("Score", variant="primary", elem_id="m4-score")
                    if examples:
                        gr.Examples(
                            [[example] for example in examples.values()],
                            inputs=text,
                            example_labels=list(examples),
                            label="Examples (written by the project's demo generator)",
                        )
                with gr.Column(scale=2):
                    result = gr.HTML(elem_id="m4-result-box")
            shaded = gr.HTML(elem_id="m4-shaded-box")
            score.click(score_texts, inputs=text, outputs=[result, shaded], api_visibility="undocumented", **batched)
        with gr.Tab("File", elem_id="m4-file-tab"):
            gr.Markdown(
                f"A `.txt` (one document), `.jsonl` (a `text` field per line, or M4 rows) or `.csv` (a `text` "
                f"column), read as `predict.py` reads it; up to {settings.max_upload_mb:g} MB."
            )
            upload = gr.File(label="File to score", file_types=list(serving.UPLOAD_SUFFIXES), elem_id="m4-upload")
            file_message = gr.Markdown(elem_id="m4-file-message")
            download = gr.File(label="predictions.jsonl (as predict.py --output writes it)", elem_id="m4-download")
            table = gr.Dataframe(label="Predictions", elem_id="m4-table", wrap=True)
            outputs = [table, download, file_message]
            upload.upload(score_file, inputs=upload, outputs=outputs, api_visibility="undocumented", **queued)
        with gr.Accordion("About this model", open=True, elem_id="m4-model"):
            gr.Markdown(serving.model_description(service.detector))
        gr.api(predict_api, api_name=API_NAME, **batched)
    return page


def api_guard() -> Any:
    """Starlette middleware that answers a call of the API with other than one argument (`{"data": []}`, or a
    second list) with one line, before Gradio fails on it with a traceback or drops the extra argument."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import JSONResponse

    async def dispatch(request: Any, call_next: Any) -> Any:
        if request.method == "POST" and request.url.path.rstrip("/").endswith(f"/{API_NAME}"):
            try:
                data = json.loads(await request.body()).get("data")
            except (ValueError, AttributeError):
                data = None
            if not isinstance(data, list) or len(data) != 1:
                message = 'send one argument, a list of texts: {"data": [["first text", "second text"]]}'
                return JSONResponse({"error": message}, status_code=422)
        return await call_next(request)

    return Middleware(BaseHTTPMiddleware, dispatch=dispatch)


def serve(settings: AppArguments) -> int:
    model_path = serving.demo_model_dir() if settings.demo else settings.model_path
    detector = load_detector(model_path, settings.machine_label, settings.max_length)
    detector.model  # noqa: B018  (load the weights now: a broken model is a start-up error, not a page error)
    datasets.disable_progress_bars()  # one "Chunking" bar per request would flood the log
    with serving.DetectorService(detector, settings) as service:
        page = build_page(service)
        page.queue(default_concurrency_limit=1)
        from gradio.themes import Default

        try:
            page.launch(
                server_name=settings.host,
                server_port=settings.port,
                share=False,
                max_file_size=int(settings.max_upload_mb * 1_000_000),
                theme=Default(font=SYSTEM_FONTS, font_mono=MONOSPACE_FONTS),
                css=serving.PAGE_CSS,
                show_error=True,
                quiet=True,
                prevent_thread_lock=True,  # back here once listening, to say so
                app_kwargs={"middleware": [api_guard()]},
            )
        except OSError as error:  # Gradio's message for any failed bind names its own parameters, not our flags
            raise UserError(
                f"cannot listen on {settings.host}:{settings.port} (the port is taken, or the address is not this "
                "machine's); choose another --port or --host"
            ) from error
        logger.info("Serving %s on http://%s:%d (Ctrl+C stops)", model_path, settings.host, settings.port)
        page.block_thread()
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes of the server
    parser = CommandLineParser([AppArguments], prog="app.py", description=__doc__)
    return run_cli(lambda: serve(*parser.parse_dataclasses(argv)))


if __name__ == "__main__":
    sys.exit(main())
