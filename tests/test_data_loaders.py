"""Reading real-file variants, de-duplication, groups and both split flows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import write_jsonl

import data_loaders as dl
from m4_training import splits
from m4_training.cli import UserError


def m4_row(human, machine, **extra):
    return {"prompt": "p", "human_text": human, "machine_text": machine, "model": "m", "source": "s", **extra}


def load(data_dir, domains, generators, reddit=None, normalize_digits=False):
    return dl.load_corpus(data_dir, domains, generators, reddit, dl.TextNormalization(normalize_digits, False))


@pytest.mark.parametrize(
    ("value", "label"),
    [(0, 0), (1.0, 1), (" 1 ", 1), ("0.0", 0), ("Human", 0), (" machine ", 1), (True, None), (2, None), ("yes", None)],
)
def test_parse_label(value, label):
    assert dl.parse_label(value) == label


def test_parse_label_missing_values():
    assert [dl.parse_label(value, missing=0) for value in (None, "", "  ", [1])] == [0, 0, 0, None]


def test_file_variants_are_read(tmp_path):
    write_jsonl(tmp_path / "arxiv_chatGPT.jsonl", [m4_row("human a", "machine a", source_ID=1.5)])
    write_jsonl(tmp_path / "arxiv_dolly2.jsonl", [{"Unnamed: 0": 0, **m4_row("human b", "machine b", source_id=7)}])
    write_jsonl(tmp_path / "peerread_davinci.jsonl", [{"text": ["part one", "part two"], "machine_text": ["m1", "m2"]}])
    write_jsonl(tmp_path / "arxiv_bloomz.jsonl", [m4_row("not selected", "not selected either")])
    corpus = load(tmp_path, ["arxiv", "PeerRead"], ["chatgpt", "dolly", "davinci"])
    by_text = {doc.text: doc for doc in corpus.documents}
    assert set(by_text) == {"human a", "machine a", "human b", "machine b", "part one part two", "m1 m2"}
    assert by_text["machine b"].generator == "dolly"
    assert by_text["machine a"].generator == "chatgpt"
    assert by_text["part one part two"].sources == [
        {"file": str(tmp_path / "peerread_davinci.jsonl"), "line": 1, "field": "text"}
    ]
    assert by_text["part one part two"].domain == "peerread" and by_text["part one part two"].label == dl.HUMAN
    assert sorted(Path(f.path).name for f in corpus.files) == [
        "arxiv_chatGPT.jsonl",
        "arxiv_dolly2.jsonl",
        "peerread_davinci.jsonl",
    ]


def test_same_human_text_across_generator_files_is_one_document_in_one_group(tmp_path):
    humans = ["shared human text number one", "shared human text number two"]
    for generator in ("chatGPT", "cohere", "flant5"):
        write_jsonl(
            tmp_path / f"reddit_{generator}.jsonl", [m4_row(h, f"{generator} answer {i}") for i, h in enumerate(humans)]
        )
    corpus = load(tmp_path, ["reddit"], ["chatgpt", "cohere", "flant5"])
    assert corpus.duplicates_removed == 4
    human_docs = [d for d in corpus.documents if d.label == dl.HUMAN]
    assert len(human_docs) == 2 and all(len(d.sources) == 3 for d in human_docs)
    groups = Counter(d.group_id for d in corpus.documents)
    assert sorted(groups.values()) == [4, 4]
    for human in human_docs:
        members = [d for d in corpus.documents if d.group_id == human.group_id]
        assert sorted(d.generator for d in members) == ["chatgpt", "cohere", "flant5", "human"]


def test_whitespace_variants_deduplicate_and_conflicting_labels_are_dropped(tmp_path):
    write_jsonl(
        tmp_path / "wikipedia_chatgpt.jsonl",
        [
            m4_row("A  text\nwith   spaces", "Copied text"),
            m4_row(" A text with spaces ", "Other machine"),
            m4_row("Copied text", "Third machine"),
        ],
    )
    corpus = load(tmp_path, ["wikipedia"], ["chatgpt"])
    texts = sorted(d.text for d in corpus.documents)
    assert texts == ["A text with spaces", "Other machine", "Third machine"]
    assert corpus.duplicates_removed == 1
    assert corpus.conflicting_label_documents == 2


def test_digits_normalised_only_when_asked(tmp_path):
    write_jsonl(tmp_path / "arxiv_chatgpt.jsonl", [m4_row("Year 2023 had 12 months", "x 7")])
    assert load(tmp_path, ["arxiv"], ["chatgpt"], normalize_digits=True).documents[0].text == "Year 0000 had 00 months"
    assert load(tmp_path, ["arxiv"], ["chatgpt"]).documents[0].text == "Year 2023 had 12 months"


def test_bad_rows_are_counted_by_reason_with_line(tmp_path, caplog):
    path = write_jsonl(
        tmp_path / "arxiv_chatgpt.jsonl",
        [
            b"\xef\xbb\xbf" + b'{"human_text": "bom first line", "machine_text": "fine machine"}',
            "{not json",
            b'{"human_text": "bad \xff bytes", "machine_text": "x"}',
            m4_row("", "machine only"),
            m4_row(None, "   "),
            {"machine_text": "no human key"},
            "[1, 2]",
            "",
            m4_row("good human", "good machine"),
        ],
    )
    with caplog.at_level("WARNING"):
        corpus = load(tmp_path, ["arxiv"], ["chatgpt"])
    report = corpus.files[0]
    assert report.rows == 8  # the blank line is not a row
    assert report.used == 4  # lines 1, 4, 6 and 9 yield at least one document
    assert dict(report.skipped) == {
        "invalid_utf8": 1,
        "malformed_json": 1,
        "human_text_empty": 1,
        "human_text_null": 1,
        "machine_text_empty": 1,
        "human_text_missing": 1,
        "not_a_json_object": 1,
    }
    assert report.skipped_lines == {
        "invalid_utf8": [3],
        "malformed_json": [2],
        "human_text_empty": [4],
        "human_text_null": [5],
        "machine_text_empty": [5],
        "human_text_missing": [6],
        "not_a_json_object": [7],
    }
    assert f"{path}:2: skipped (malformed_json)" in caplog.text
    assert "bom first line" in {d.text for d in corpus.documents}


def test_reddit_rows_labels_and_defaults(tmp_path):
    write_jsonl(tmp_path / "arxiv_chatgpt.jsonl", [m4_row("h", "m")])
    reddit = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"text": "plain post", "source": "reddit_wsb"},
            {"text": "labelled one", "label": "1"},
            {"text": "float zero", "label": 0.0},
            {"text": "null label", "label": None},
            {"text": "bad label", "label": 2},
            {"body": "from body field"},
            {"text": "   "},
        ],
    )
    corpus = load(tmp_path, ["arxiv"], ["chatgpt"], reddit=reddit)
    posts = {d.text: d for d in corpus.documents if d.sources[0]["file"] == str(reddit)}
    assert {t: d.label for t, d in posts.items()} == {
        "plain post": 0,
        "labelled one": 1,
        "float zero": 0,
        "null label": 0,
        "from body field": 0,
    }
    assert posts["plain post"].domain == "reddit_wsb" and posts["float zero"].domain == "reddit_posts"
    assert dict(corpus.files[-1].skipped) == {"label_invalid": 1, "text_empty": 1}
    assert len({d.group_id for d in posts.values()}) == 5


def test_no_usable_rows_and_missing_files_fail_clearly(tmp_path):
    write_jsonl(tmp_path / "arxiv_chatgpt.jsonl", ["{broken", m4_row("", "")])
    with pytest.raises(UserError, match="no usable rows"):
        load(tmp_path, ["arxiv"], ["chatgpt"])
    with pytest.raises(UserError, match="--train_domains wikihow matches no file; domains there: arxiv"):
        load(tmp_path, ["wikihow"], ["chatgpt"])
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "nope", ["arxiv"], ["chatgpt"])
    with pytest.raises(UserError, match="Reddit file not found"):
        load(tmp_path, ["arxiv"], ["chatgpt"], reddit=tmp_path / "missing.jsonl")


def synthetic_corpus(tmp_path, n_rows=60, generators=("chatgpt", "davinci", "flant5"), n_posts=200):
    for domain in ("arxiv", "wikihow"):
        for generator in generators:
            write_jsonl(
                tmp_path / f"{domain}_{generator}.jsonl",
                [m4_row(f"{domain} human {i}", f"{domain} {generator} machine {i}") for i in range(n_rows)],
            )
    reddit = write_jsonl(tmp_path / "posts.jsonl", [{"text": f"post {i}"} for i in range(n_posts)])
    return load(tmp_path, ["arxiv", "wikihow"], list(generators), reddit=reddit)


@pytest.mark.parametrize("validation_split", [0.1, 0.2, 0.35])
def test_stratified_split_is_grouped_and_hits_ratios(tmp_path, validation_split):
    corpus = synthetic_corpus(tmp_path)
    split = splits.split_corpus(corpus, True, validation_split, "flant5", 0.1, seed=3)
    assert splits.group_overlap(split) == 0
    n_docs = len(corpus.documents)
    assert len(split.train) + len(split.val) == n_docs
    assert abs(len(split.val) / n_docs - validation_split) <= 0.03
    for label in (dl.HUMAN, dl.MACHINE):
        total = sum(d.label == label for d in corpus.documents)
        assert abs(sum(d.label == label for d in split.val) / total - validation_split) <= 0.03
    val_domains = Counter(d.domain for d in split.val)
    assert set(val_domains) == {"arxiv", "wikihow", "reddit_posts"}
    assert {d.text for d in split.train}.isdisjoint({d.text for d in split.val})


def test_generator_holdout_never_trains_on_val_generator(tmp_path):
    corpus = synthetic_corpus(tmp_path)
    split = splits.split_corpus(corpus, False, 0.1, "flant5", 0.25, seed=0)
    assert splits.group_overlap(split) == 0
    assert not any(d.generator == "flant5" for d in split.train)
    assert {d.generator for d in split.val} == {"human", "flant5"}
    val_m4_groups = {d.group_id for d in split.val if d.domain != "reddit_posts"}
    assert len(val_m4_groups) == 12  # 10% of the 60 groups of each of the 2 domains
    assert sum(d.generator == "flant5" for d in split.val) == 12
    assert split.dropped == {"other_generator_in_validation_group": 24, "val_generator_in_training_group": 108}
    posts_val = sum(d.domain == "reddit_posts" for d in split.val)
    assert posts_val == 50
    accounted = len(split.train) + len(split.val) + sum(split.dropped.values())
    assert accounted == len(corpus.documents)


def test_missing_val_generator_lists_generators_per_domain(tmp_path):
    corpus = synthetic_corpus(tmp_path, generators=("chatgpt", "davinci"))
    with pytest.raises(UserError) as error:
        splits.split_corpus(corpus, False, 0.1, "flant5", 0.1, seed=0)
    assert "arxiv: chatgpt, davinci; wikihow: chatgpt, davinci" in str(error.value)


def test_max_samples_only_remove_documents_from_each_side(tmp_path):
    corpus = synthetic_corpus(tmp_path)
    for stratified in (True, False):
        full = splits.split_corpus(corpus, stratified, 0.2, "flant5", 0.1, seed=1)
        split = splits.split_corpus(
            corpus, stratified, 0.2, "flant5", 0.1, seed=1, max_train_samples=50, max_val_samples=20
        )
        assert (len(split.train), len(split.val)) == (50, 20)
        assert {d.doc_id for d in split.train} <= {d.doc_id for d in full.train}
        assert {d.doc_id for d in split.val} <= {d.doc_id for d in full.val}
        assert splits.group_overlap(split) == 0


@pytest.mark.parametrize(
    "text",
    [
        "a b  c\n\nd e",
        "   lead and trail  ",
        "x" * 25 + "  " + "\t" * 30 + " y\n",
        "nospace" * 10,
        "\u00a0a\u2003b\u3000c",
    ],
)
def test_huge_texts_normalised_in_pieces_equal_the_whole(monkeypatch, text):
    monkeypatch.setattr(dl, "NORMALIZE_PIECE_CHARS", 7)  # every text here is cut into many pieces
    for repeated in (text, text * 3):
        assert dl.normalize_text(repeated, dl.TextNormalization(False, False)) == " ".join(repeated.split())
