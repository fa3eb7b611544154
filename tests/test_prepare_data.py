"""prepare_data.py and text_cleaning: every cleaning rule, the keep/drop tables, the cut-off, de-dup, determinism."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import write_jsonl

import prepare_data
from data_loaders import TextNormalization, load_corpus
from m4_training.cleaning import clean_text, unescape_entities


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Tom &amp; Jerry &quot;quoted&quot; &#39;x&#39;", "Tom & Jerry \"quoted\" 'x'"),
        ("nested &amp;amp;lt;3 and &amp;amp;amp; done", "nested <3 and & done"),
        ("<p>Hello <b>bold</b> <a href='x'>link</a></p>", "Hello bold link"),
        ("escaped &lt;i&gt;tag&lt;/i&gt; here", "escaped tag here"),
        ("one<br>two", "one\ntwo"),
        ("a < b and c > d stay", "a < b and c > d stay"),
        ("<!-- note --> visible", "visible"),
        ("see [the docs](https://x.org/a_b) now", "see the docs now"),
        ("pic ![alt text](http://i.png) here", "pic alt text here"),
        ("ref [label][1] text\n[1]: http://foo.org", "ref label text"),
        ("visit https://www.example.com/a_b?x=1 or www.foo.com.", "visit or ."),
        ("# Title\n## Sub ##\nbody", "Title\nSub\nbody"),
        ("**bold** __strong__ *it* _em_ ~~struck~~", "bold strong it em struck"),
        ("snake_case_name and 2*3*4 stay", "snake_case_name and 2*3*4 stay"),
        ("> quoted\n>> nested\nreply", "quoted\nnested\nreply"),
        ("before\n```python\nprint(1)\n```\nafter `inline` word", "before\n\nafter inline word"),
        ("a <pre>code\nblock</pre> b <code>x()</code> c", "a b c"),
        ("energy $E=mc^2$ and $$\\int x\\,dx$$ end", "energy and end"),
        ("inline \\(a+b\\) and display \\[c\\] end", "inline and display end"),
        ("\\begin{equation} x = 1 \\end{equation} done", "done"),
        ("costs $5 and $10, $GME rises", "costs $5 and $10, $GME rises"),
        ("masses $M = 1.04\n\\pm 0.13$ found", "masses found"),
        ("math $a\n\nb$ spans no paragraph", "math $a\n\nb$ spans no paragraph"),
        ("as shown \\cite{smith99} the \\emph{key} result in \\msun units", "as shown the key result in units"),
        ("a   b\t\tc\n\n\n\n d\u00a0e\u200bf  ", "a b c\n\nd ef"),
        ("line one  \r\n  line two\rthree \n \n \n four", "line one\nline two\nthree\n\nfour"),
    ],
)
def test_clean_text_rules(raw, clean):
    assert clean_text(raw) == clean


def test_unescape_stops_at_plain_text():
    assert unescape_entities("&amp;amp;amp;amp;") == "&"
    assert unescape_entities("R&D, 5 < 6") == "R&D, 5 < 6"


LONG = "This sentence is long enough to pass the minimum length after cleaning. "


def test_prepare_m4_cleans_both_fields_and_tables_drops(tmp_path):
    raw = tmp_path / "raw"
    write_jsonl(
        raw / "arxiv_chatGPT.jsonl",
        [
            {"human_text": f"<b>Human one.</b> {LONG} $x^2$", "machine_text": f"**Machine one.** {LONG} https://a.org"},
            {"text": f"&amp;amp; Human two. {LONG}", "machine_text": ["# Head", f"Machine two. {LONG}", "<i></i>"]},
            {"human_text": "<p>short</p>", "machine_text": LONG},
            {"human_text": LONG, "machine_text": "[tiny](http://x.org)"},
            {"human_text": LONG},
            {"human_text": None, "machine_text": LONG},
            "{not json",
            b"\xff\xfe bad bytes",
        ],
    )
    write_jsonl(raw / "wikipedia_flant5.jsonl", [{"human_text": f"Human one. {LONG}", "machine_text": LONG}])
    out = tmp_path / "clean"
    assert prepare_data.main(["m4", "--input_dir", str(raw), "--output_dir", str(out), "--min_chars", "40"]) == 0

    rows = [json.loads(line) for line in open(out / "arxiv_chatGPT.jsonl", encoding="utf-8")]
    assert rows == [
        {"human_text": f"Human one. {LONG.strip()}", "machine_text": f"Machine one. {LONG.strip()}"},
        {"text": f"& Human two. {LONG.strip()}", "machine_text": ["Head", f"Machine two. {LONG.strip()}"]},
    ]
    table = json.loads((out / "prepare_report.json").read_text())
    assert table["settings"]["min_chars"] == 40
    first, second = table["files"]
    assert (first["rows"], first["kept"]) == (8, 2)
    assert first["dropped"] == {
        "human_text_null": 1,
        "human_text_too_short": 1,
        "invalid_utf8": 1,
        "machine_text_missing": 1,
        "machine_text_too_short": 1,
        "malformed_json": 1,
    }
    assert (second["rows"], second["kept"], second["dropped"]) == (1, 1, {})
    # The cleaned directory is what train.py reads. The cleaned wikipedia human text equals an arxiv one, so
    # de-duplication merges it (it was "<b>Human one.</b> ... $x^2$" in the raw file).
    corpus = load_corpus(out, ["arxiv", "wikipedia"], ["chatgpt", "flant5"], None, TextNormalization(True, True))
    assert sorted((d.label, d.domain, len(d.sources)) for d in corpus.documents) == [
        (0, "arxiv", 1),
        (0, "arxiv", 2),
        (1, "arxiv", 1),
        (1, "arxiv", 1),
        (1, "wikipedia", 1),
    ]
    assert corpus.duplicates_removed == 1


def test_prepare_m4_refuses_to_overwrite_raw_files(tmp_path, capsys):
    write_jsonl(tmp_path / "arxiv_chatGPT.jsonl", [{"human_text": LONG, "machine_text": LONG}])
    assert prepare_data.main(["m4", "--input_dir", str(tmp_path), "--output_dir", str(tmp_path)]) == 2
    assert f"--output_dir {tmp_path} is --input_dir {tmp_path}" in capsys.readouterr().err


def _reddit_rows():
    return [
        {"body": f"post one {LONG}", "created_utc": 1600000000, "id": "a"},  # 2020-09-13
        {"body": f"post two &amp;amp; {LONG}", "created_utc": "1600003600", "id": "b"},
        {"body": f"  POST   one {LONG}", "created_utc": 1600007200, "id": "c"},  # duplicate text of "a"
        {"body": f"post three {LONG}", "created_utc": 1600010800, "id": "a"},  # duplicate id
        {"body": f"late {LONG}", "created_utc": "2022-11-30T00:00:00Z", "id": "d"},  # on the cut-off: dropped
        {"body": f"just before {LONG}", "created_utc": "2022-11-29 23:59:59", "id": "e"},
        {"body": "[deleted]", "created_utc": 1600000000, "id": "f"},
        {"body": "lol", "created_utc": 1600000000, "id": "g"},
        {"body": f"no time {LONG}", "id": "h"},
        {"body": f"bad time {LONG}", "created_utc": "yesterday", "id": "i"},
        {"text": f"jan {LONG}", "created_utc": "2021-01-05", "id": "j1"},
        {"text": f"jan again {LONG}", "created_utc": "2021-01-06", "id": "j2"},
        {"text": f"jan third {LONG}", "created_utc": "2021-01-07", "id": "j3"},
    ]


def _run_reddit(tmp_path, source, name, *flags):
    output = tmp_path / name
    assert prepare_data.main(["reddit", "--input", str(source), "--output", str(output), *flags]) == 0
    rows = [json.loads(line) for line in open(output, encoding="utf-8")]
    return rows, json.loads(open(f"{output}.report.json", encoding="utf-8").read())["files"][0]


def test_prepare_reddit_jsonl_filters_and_format(tmp_path):
    source = write_jsonl(tmp_path / "dump.jsonl", _reddit_rows())
    rows, table = _run_reddit(tmp_path, source, "out.jsonl")
    assert [row["id"] for row in rows] == ["a", "b", "e", "j1", "j2", "j3"]
    assert rows[0] == {
        "text": f"post one {LONG.strip()}",
        "label": 0,
        "source": "reddit_posts",
        "timestamp": "2020-09-13 12:26:40",
        "id": "a",
    }
    assert rows[1]["text"].startswith("post two & This")
    assert rows[2]["timestamp"] == "2022-11-29 23:59:59"
    assert (table["rows"], table["kept"]) == (13, 6)
    assert table["dropped"] == {
        "after_cutoff": 1,
        "duplicate": 2,
        "text_deleted": 1,
        "text_too_short": 1,
        "timestamp_invalid": 1,
        "timestamp_missing": 1,
    }


def test_prepare_reddit_csv_cutoff_and_month_cap(tmp_path):
    source = tmp_path / "dump.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["title", "body", "timestamp", "id"])
        writer.writeheader()
        for row in _reddit_rows():
            text = row.get("body", row.get("text"))
            writer.writerow({"title": "T", "body": text, "timestamp": row.get("created_utc", ""), "id": row["id"]})
    rows, table = _run_reddit(
        tmp_path, source, "csv.jsonl", "--cutoff_date", "2021-01-06", "--max_per_month", "1", "--source", "wsb"
    )
    # Before 2021-01-06: a, b (both 2020-09, capped to one), j1 (2021-01).
    assert len(rows) == 2 and rows[-1]["id"] == "j1" and rows[0]["id"] in {"a", "b"}
    assert {row["source"] for row in rows} == {"wsb"}
    assert table["dropped"]["after_cutoff"] == 4 and table["dropped"]["over_month_cap"] == 1


def test_prepare_reddit_sampling_is_seeded(tmp_path):
    # Distinct letters, not numbers: digits are normalised in the de-duplication key, as in training.
    names = [a + b for a in "abcdef" for b in "ghijklmnop"]
    posts = [
        {"text": f"post {name} {LONG}", "timestamp": 1500000000 + 86400 * i, "id": str(i)}
        for i, name in enumerate(names)
    ]
    source = write_jsonl(tmp_path / "many.jsonl", posts)
    first, _ = _run_reddit(tmp_path, source, "s1.jsonl", "--sample_size", "20", "--seed", "1")
    again, table = _run_reddit(tmp_path, source, "s2.jsonl", "--sample_size", "20", "--seed", "1")
    other, _ = _run_reddit(tmp_path, source, "s3.jsonl", "--sample_size", "20", "--seed", "2")
    assert first == again and len(first) == 20
    assert [row["id"] for row in first] != [row["id"] for row in other]
    assert [int(row["id"]) for row in first] == sorted(int(row["id"]) for row in first)  # file order kept
    assert table["dropped"] == {"over_sample_size": 40}
    assert (tmp_path / "s1.jsonl").read_bytes() == (tmp_path / "s2.jsonl").read_bytes()


def test_prepare_reddit_errors(tmp_path, capsys):
    assert prepare_data.main(["reddit", "--input", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    source = write_jsonl(tmp_path / "d.jsonl", [{"text": LONG, "timestamp": 1, "id": "x"}])
    assert prepare_data.main(["reddit", "--input", str(source), "--cutoff_date", "30/11/2022"]) == 2
    assert "--cutoff_date" in capsys.readouterr().err
