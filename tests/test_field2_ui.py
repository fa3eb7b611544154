"""Second field test, the API: only `text` is scored, ids are bounded and valid JSON, skipped items answered."""

from __future__ import annotations

import json
import math

import pytest

from m4_training import serving
from m4_training.scoring import load_detector
from m4_training.serving import AppArguments

TEXT = "moreover the city water system plays a crucial role in growth and development of the region"


@pytest.fixture(scope="module")
def service(demo_run):
    return serving.DetectorService(load_detector(demo_run), AppArguments(model_path=str(demo_run), max_chars=500))


def test_an_item_with_m4_fields_is_scored_by_its_text_alone(service):
    item = {"id": "x", "text": TEXT, "human_text": "h" * 2000, "machine_text": "m" * 2000}
    (rows,) = service.score_requests([[item]])
    (alone,) = service.score_requests([[{"id": "x", "text": TEXT}]])
    assert rows == alone and len(rows) == 1 and "label" not in rows[0]
    (too_long,) = service.score_requests([[{"text": "t " * 300}]])
    assert "600 characters" in too_long["error"]


@pytest.mark.parametrize("bad_id", ["i" * 5000, math.nan, 1.5, True, ["a"]])
def test_an_unusable_id_is_refused_not_echoed(service, bad_id):
    (answer,) = service.score_requests([[{"id": bad_id, "text": TEXT}]])
    assert answer == {"error": "item 1: `id` must be a string or an integer of at most 256 characters"}
    json.dumps(answer, allow_nan=False)  # valid JSON


def test_skipped_items_are_answered_with_their_reason(service):
    (rows,) = service.score_requests([["", TEXT, "   ", {"text": TEXT, "id": "b"}]])
    assert [row.get("id") for row in rows[:2]] == [2, "b"]
    assert rows[2:] == [{"item": 1, "skipped": "text_empty"}, {"item": 3, "skipped": "text_empty"}]


def test_an_ipv6_host_is_written_as_urls_need_it(demo_run):
    assert AppArguments(model_path=str(demo_run), host="::1").host == "[::1]"
    assert AppArguments(model_path=str(demo_run), host="[::1]").host == "[::1]"
    assert AppArguments(model_path=str(demo_run), host="0.0.0.0").host == "0.0.0.0"


def test_a_failed_start_says_nothing_of_serving_and_leaves_no_folder(demo_run, tmp_path, caplog, monkeypatch):
    import logging
    import socket
    import tempfile

    import app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as taken, caplog.at_level(logging.INFO):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert app.main(["--model_path", str(demo_run), "--port", str(taken.getsockname()[1])]) == 2
    assert "Serving" not in caplog.text
    assert not list(tmp_path.glob("m4-detector-app-*"))


def _run(directory, f1=0.8, auroc=0.9, config=True):
    directory.mkdir(parents=True)
    document = {"f1_macro": f1, "auroc": auroc, "fpr_human": 0.05, "n_human": 10, "n_machine": 12}
    metrics = {"document": document, "threshold": {"value": 0.5}}
    (directory / "metrics.json").write_text(json.dumps(metrics))
    if config:
        settings = {"data_summary": {"split_flow": "stratified"}, "arguments": {"split": {}}}
        (directory / "training_config.json").write_text(json.dumps(settings))
    return directory


def test_summary_names_what_a_run_lacks_and_refuses_a_list(tmp_path, capsys):
    from m4_training import summarize_runs

    _run(tmp_path / "a")
    _run(tmp_path / "b", config=False)
    assert summarize_runs.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "| b | not finished (no training_config.json) |" in capsys.readouterr().out
    (tmp_path / "b" / "training_config.json").write_text("[1, 2]")
    assert summarize_runs.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err == (
        f"error: --runs {tmp_path / 'b'}: training_config.json is not a JSON object (not written by train.py?)\n"
    )


def test_summary_mean_leaves_out_nan_and_counts_a_run_once(tmp_path, capsys, caplog):
    from m4_training import summarize_runs

    runs = [_run(tmp_path / "a", 0.8, 0.9), _run(tmp_path / "b", 0.6, math.nan), _run(tmp_path / "c", 0.7, 0.7)]
    argv = ["--runs", *map(str, runs), str(tmp_path / "a" / ".." / "a")]
    assert summarize_runs.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("| a |") for line in lines) == 1
    (mean_row,) = [line for line in lines if line.startswith("| mean |")]
    assert "| 0.700 | 0.800 |" in mean_row  # F1 (0.8+0.6+0.7)/3, AUROC (0.9+0.7)/2
    assert "NaN of: b" in caplog.text


def test_the_demo_model_says_so_next_to_its_verdict_and_only_it_offers_toy_examples(service, tiny_model_dir):
    assert serving.is_demo_model(service.detector)
    (result,) = service.score_page_texts([TEXT])
    assert serving.DEMO_MODEL_NOTE in serving.result_html(result, 0.5, 5, demo_model=True)
    assert serving.DEMO_MODEL_NOTE not in serving.result_html(result, 0.5, 5)
    assert not serving.is_demo_model(load_detector(tiny_model_dir))  # no training_config.json: not the demo's


def test_training_data_names_what_was_read_not_what_was_asked():
    from m4_training import reports

    counts = {side: {"human": 1, "machine": 1} for side in ("train", "val")}
    summary = {"split_flow": "stratified", "documents": counts, "chunks": counts}
    settings = {
        "data": {
            "train_domains": ["arxiv", "peerread"],
            "train_generators": ["llama2", "chatGPT"],
            "reddit_file": None,
        },
        "split": {"validation_split": 0.1, "val_generator": "flant5"},
    }
    read = reports.training_data_lines(summary | {"generators_by_domain": {"arxiv": ["llama2"]}}, settings)[0]
    assert read.startswith("M4 domains arxiv; generators llama2; no Reddit file.")
    asked = reports.training_data_lines(summary, settings)[0]  # a run from before the files read were recorded
    assert asked.startswith("M4 domains arxiv, peerread; generators llama2, chatGPT;")


def test_an_api_call_with_other_than_one_argument_gets_one_line(monkeypatch):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    import app

    calls = []

    async def endpoint(request):
        calls.append(await request.json())
        return JSONResponse({"event_id": "x"})

    server = Starlette(
        routes=[Route("/gradio_api/call/predict", endpoint, methods=["POST"])], middleware=[app.api_guard()]
    )
    client = TestClient(server)
    for body in ({"data": []}, {"data": [["a"], ["b"]]}, {"data": "a"}, {}):
        answer = client.post("/gradio_api/call/predict", json=body)
        assert answer.status_code == 422 and answer.json()["error"].startswith("send one argument, a list of texts")
    assert client.post("/gradio_api/call/predict", json={"data": [["a", "b"]]}).json() == {"event_id": "x"}
    assert calls == [{"data": [["a", "b"]]}]  # the one valid call reached the endpoint, its body intact
