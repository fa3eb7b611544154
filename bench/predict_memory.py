"""Peak memory of predict.py on one long document, as a multiple of the document's size.

    python bench/predict_memory.py --model_path outputs/demo                    # 10 MB of the shared sample
    python bench/predict_memory.py --model_path outputs/demo --megabytes 48 --english

The document is the shared sample's texts (all its languages; --english: its English domains only, else the
demo sample's), repeated to --megabytes of UTF-8 and written as one .txt file. predict.py runs twice in its own
process, on a one-line document and on the long one; the growth of the peak RSS (`os.wait4`'s ru_maxrss, the
process's own) over the one-line run is the long document's cost. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = Path(os.environ.get("M4_SHARED_DATA", ROOT.parent / "shared" / "data")) / "m4_sample"
ENGLISH_DOMAINS = ("arxiv", "wikipedia", "reddit", "wikihow")


def sample_text(english: bool) -> str:
    if not SHARED_SAMPLE.is_dir():
        from m4_training import demo

        data_dir, _ = demo.write_demo_data(tempfile.mkdtemp(prefix="bench-demo-"))
        paths = sorted(data_dir.glob("*.jsonl"))
    else:
        paths = [p for p in sorted(SHARED_SAMPLE.glob("*.jsonl")) if not english or p.name.startswith(ENGLISH_DOMAINS)]
    rows = [json.loads(line) for path in paths for line in path.open(encoding="utf-8")]
    return "\n".join(
        row[key] for row in rows for key in ("human_text", "machine_text") if isinstance(row.get(key), str)
    )


def peak_rss_mb(model_path: str, document: Path) -> tuple[float, dict]:
    """Peak RSS (MB, 10^6 bytes) of one predict.py process scoring `document`, and its output row."""
    command = [sys.executable, str(ROOT / "predict.py"), "--model_path", model_path, "--input", str(document)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"predict.py failed on {document}"
    return usage.ru_maxrss * 1024 / 1e6, json.loads(output)  # ru_maxrss: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", required=True, help="a train.py output directory (e.g. of --demo)")
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--english", action="store_true", help="the sample's English domains only")
    args = parser.parse_args()
    text = sample_text(args.english)
    size = int(args.megabytes * 1_000_000)
    while len(text.encode("utf-8")) < size:
        text += "\n" + text
    text = text.encode("utf-8")[:size].decode("utf-8", errors="ignore")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    (work / "one_line.txt").write_text(text.split("\n", 1)[0], encoding="utf-8")
    (work / "long.txt").write_text(text, encoding="utf-8")
    base, _ = peak_rss_mb(args.model_path, work / "one_line.txt")
    peak, row = peak_rss_mb(args.model_path, work / "long.txt")
    megabytes = len(text.encode("utf-8")) / 1_000_000
    result = {"document_mb": round(megabytes, 2), "chunks": row["n_chunks"], "peak_rss_one_line_mb": round(base),
              "peak_rss_mb": round(peak), "growth_mb": round(peak - base),
              "growth_per_document_byte": round((peak - base) / megabytes, 1)}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
