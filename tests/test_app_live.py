"""app.py running for real on the loopback address: the README's curl example, batching of concurrent API calls,
and the page driven in headless chromium (type, click, read, upload, download, screenshot)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import httpx
import pytest
from conftest import ROOT, write_jsonl

import predict
from m4_training import serving
from m4_training.scoring import load_detector
from m4_training.serving import AppArguments
from tools.browser import chromium_page, missing_browser, running_app

SHORT_TEXT = "moreover the city water system plays a crucial role in growth"


@pytest.fixture(scope="module")
def live_app(demo_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app("--model_path", str(demo_run), log=log) as url:
        yield url, log


def predict_rows(demo_run, path, capsys):
    assert predict.main(["--model_path", str(demo_run), "--input", str(path)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def same_rows(got, expected, tolerance=1e-6):
    assert [{k: v for k, v in row.items() if k != "prob_machine"} for row in got] == [
        {k: v for k, v in row.items() if k != "prob_machine"} for row in expected
    ]
    assert [row["prob_machine"] for row in got] == pytest.approx([r["prob_machine"] for r in expected], abs=tolerance)


def call_api(url, texts):
    """Gradio's two-step REST call: join the queue, then read the event's result stream."""
    with httpx.Client(base_url=url, timeout=120) as client:
        event = client.post("gradio_api/call/predict", json={"data": [texts]}).json()["event_id"]
        stream = client.get(f"gradio_api/call/predict/{event}").text
    assert "event: complete" in stream, stream
    data = next(line for line in stream.splitlines() if line.startswith("data: "))
    (rows,) = json.loads(data[len("data: ") :])
    return rows


def test_readme_curl_example_returns_predict_rows(live_app, demo_run, tmp_path, capsys):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed (apt-get install curl)")
    url, _ = live_app
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (example,) = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL) if "gradio_api/call/predict" in b]
    texts = json.loads(re.search(r"-d '(.*?)'", example).group(1))["data"][0]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.replace("http://127.0.0.1:7860/", url)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("event: complete\ndata: ")
    (rows,) = json.loads(result.stdout.split("data: ", 1)[1])
    expected = predict_rows(demo_run, write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in texts]), capsys)
    same_rows(rows, expected)
    (shown,) = re.findall(r"```text\nevent: complete\ndata: (.*?)\n```", readme)
    assert [{k: row[k] for k in ("id", "pred", "n_chunks")} for row in json.loads(shown)[0]] == [
        {k: row[k] for k in ("id", "pred", "n_chunks")} for row in rows
    ]


def test_concurrent_api_calls_share_batches(live_app, demo_run, tmp_path, capsys):
    url, log = live_app
    # A long first request keeps the model busy while the others join the queue behind it.
    requests = [[" ".join([SHORT_TEXT] * 400)]] + [[f"{SHORT_TEXT} number {i}", "tbh " * (i + 1)] for i in range(7)]
    results = [None] * len(requests)

    def client(i):
        results[i] = call_api(url, requests[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for i, texts in enumerate(requests):
        expected = predict_rows(demo_run, write_jsonl(tmp_path / f"r{i}.jsonl", [{"text": t} for t in texts]), capsys)
        same_rows(results[i], expected, tolerance=1e-5)  # other padding in a merged batch: float noise only
    sizes = [int(n) for n in re.findall(r"API batch of (\d+) requests", log.read_text(encoding="utf-8"))]
    assert sum(sizes) >= len(requests) and max(sizes) > 1, sizes


def test_page_in_headless_chromium(live_app, demo_run, tmp_path, capsys):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect

    url, _ = live_app
    examples = serving.example_texts()
    long_text = examples["Long machine-written text"]
    (tmp_path / "long.txt").write_text(long_text, encoding="utf-8")
    (expected_long,) = predict_rows(demo_run, tmp_path / "long.txt", capsys)
    upload = write_jsonl(
        tmp_path / "to_score.jsonl", [{"id": "a", "text": long_text, "label": 1}, {"text": SHORT_TEXT, "domain": "x"}]
    )
    reference = tmp_path / "predict_output.jsonl"
    assert predict.main(["--model_path", str(demo_run), "--input", str(upload), "--output", str(reference)]) == 0

    with chromium_page() as (page, outside):
        page.goto(url)
        page.get_by_text("Long machine-written text", exact=True).click()  # an example fills the text box
        expect(page.locator("#m4-text textarea")).to_have_value(long_text)
        page.locator("#m4-score").click()
        result = page.locator("#m4-result[data-prob]")
        result.wait_for(timeout=60_000)
        prob, label = float(result.get_attribute("data-prob")), result.get_attribute("data-label")
        assert prob == pytest.approx(expected_long["prob_machine"], abs=1e-7)
        assert label == ("human", "machine")[expected_long["pred"]]
        assert result.locator(".m4-verdict").inner_text().lower() == label
        assert result.locator(".m4-prob").inner_text() == f"{prob:.4f}"
        assert int(result.locator(".m4-windows").inner_text()) == expected_long["n_chunks"] > 2
        shades = page.locator("#m4-shaded .m4-w")
        assert shades.count() == 2 * expected_long["n_chunks"] - 1  # windows and their overlaps
        assert "".join(shades.all_inner_texts()) == long_text
        (scored,) = serving.DetectorService(
            load_detector(demo_run), AppArguments(model_path=str(demo_run))
        ).score_page_texts([long_text])
        assert shades.evaluate_all("spans => spans.map(s => s.title)") == [
            f"P(machine) {p:.3f}" for _, _, p in serving.shading_segments(scored.windows)
        ]
        assert "Too short" not in result.inner_text()
        page.screenshot(path=tmp_path / "long_text.png", full_page=True)

        page.locator("#m4-text textarea").fill(SHORT_TEXT)
        page.locator("#m4-score").click()
        page.get_by_text("Too short to judge reliably").wait_for(timeout=60_000)
        model_panel = page.locator("#m4-model").inner_text()
        assert "Decision threshold" in model_panel and "validation generator flant5 never trained on" in model_panel
        assert "documents of every domain at or below 0.05; on other human writing" in model_panel

        page.get_by_role("tab", name="File").click()
        page.locator("#m4-upload input[type=file]").set_input_files(upload)
        link = page.locator("#m4-download a[download]").first
        link.wait_for(timeout=60_000)
        with page.expect_download() as download:
            link.click()
        download.value.save_as(tmp_path / "downloaded.jsonl")
        assert (tmp_path / "downloaded.jsonl").read_bytes() == reference.read_bytes()
        assert "2 documents scored" in page.locator("#m4-file-message").inner_text()
        page.screenshot(path=tmp_path / "file.png", full_page=True)
    assert outside == []  # the page asked nothing of the network
    assert (tmp_path / "long_text.png").stat().st_size > 10_000
