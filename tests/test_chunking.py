"""Windows reproduce each document's token sequence exactly, with the requested overlap."""

from __future__ import annotations

import pytest

import chunking
from data_loaders import Document
from m4_training.cli import UserError

TEXTS = [
    "short text",
    " ".join(f"word{i} and more" for i in range(200)),
    "Über café naïve — emojis 🙂 and ünïcödé " * 30,
    "x",
]


def documents(texts):
    return [
        Document(i + 10, t, i % 2, "arxiv", "human" if i % 2 == 0 else "chatgpt", [], i) for i, t in enumerate(texts)
    ]


def check_windows(tokenizer, texts, max_length, overlap):
    docs = documents(texts)
    chunks = chunking.chunk_documents(chunking.documents_to_dataset(docs), tokenizer, max_length, overlap)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    counts = chunking.document_token_counts(chunks, tokenizer, overlap)
    for doc in docs:
        rows = [row for row in chunks if row["doc_id"] == doc.doc_id]
        assert all(row["labels"] == doc.label for row in rows)
        assert all(len(row["input_ids"]) == row["length"] <= max_length for row in rows)
        assert n_special == 2  # both tokenizers wrap a window as <cls> ... <sep>
        contents = [row["input_ids"][1:-1] for row in rows]
        assert all(row["input_ids"][0] == tokenizer.cls_token_id for row in rows)
        assert all(row["input_ids"][-1] == tokenizer.sep_token_id for row in rows)
        for previous, current in zip(contents, contents[1:]):
            if overlap:
                assert previous[-overlap:] == current[:overlap]
        rebuilt = contents[0] + [token for window in contents[1:] for token in window[overlap:]]
        expected = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        assert rebuilt == expected
        assert counts[doc.doc_id] == (len(expected), len(rows))
        if len(rows) > 1:
            assert all(len(row["input_ids"]) == max_length for row in rows[:-1])
    return chunks


@pytest.mark.parametrize("max_length,overlap", [(16, 4), (32, 0), (12, 9), (512, 50)])
def test_windows_reproduce_tokens_tiny(tiny_tokenizer, max_length, overlap):
    check_windows(tiny_tokenizer, TEXTS, max_length, overlap)


@pytest.mark.parametrize("max_length,overlap", [(64, 16), (512, 50)])
def test_windows_reproduce_tokens_roberta(roberta_tokenizer, shared_data, max_length, overlap):
    import json

    texts = [json.loads(line)["human_text"] for line in open(shared_data / "m4_sample" / "arxiv_llama2.jsonl")][:20]
    chunks = check_windows(roberta_tokenizer, texts + TEXTS, max_length, overlap)
    first = chunks[0]["input_ids"]
    assert first[0] == roberta_tokenizer.cls_token_id and first[-1] == roberta_tokenizer.sep_token_id


def test_windows_equal_the_tokenizers_own_overflow_windows(tiny_tokenizer):
    """The numpy windows are token for token what `return_overflowing_tokens` with `stride` gives."""
    for max_length, overlap in [(16, 4), (12, 9), (20, 0), (64, 8)]:
        chunks = chunking.chunk_documents(
            chunking.documents_to_dataset(documents(TEXTS)), tiny_tokenizer, max_length, overlap
        )
        reference = tiny_tokenizer(
            TEXTS, truncation=True, max_length=max_length, stride=overlap, return_overflowing_tokens=True
        )
        assert chunks["input_ids"][:] == reference["input_ids"]
        assert chunks["doc_id"][:] == [10 + i for i in reference["overflow_to_sample_mapping"]]


def test_window_token_ids_edges():
    spec = chunking.WindowSpec(content=4, overlap=1, prefix=(101,), suffix=(102, 103))
    windows, owners = chunking.window_token_ids([[], [1, 2, 3, 4], [1, 2, 3, 4, 5], list(range(1, 11))], spec)
    assert windows.to_pylist() == [
        [101, 102, 103],
        [101, 1, 2, 3, 4, 102, 103],
        [101, 1, 2, 3, 4, 102, 103], [101, 4, 5, 102, 103],
        [101, 1, 2, 3, 4, 102, 103], [101, 4, 5, 6, 7, 102, 103], [101, 7, 8, 9, 10, 102, 103],
    ]  # fmt: skip
    assert owners.tolist() == [0, 1, 2, 2, 3, 3, 3]


def test_special_tokens_come_from_the_tokenizers_template(tiny_model_dir):
    """A tokenizer that only appends a token, and one that adds none, are windowed by their own rule."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    text = TEXTS[1]
    for template, expected_special in [("$A [SEP]", ["[SEP]"]), ("$A", [])]:
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        sep = tokenizer.sep_token_id
        special = [("[SEP]", sep)] if expected_special else []
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=template, special_tokens=special)
        spec = chunking.window_spec(tokenizer, 16, 3)
        assert spec.prefix == () and spec.suffix == tuple(tokenizer.convert_tokens_to_ids(expected_special))
        assert spec.content == 16 - len(expected_special)
        chunks = chunking.chunk_documents(chunking.documents_to_dataset(documents([text])), tokenizer, 16, 3)
        contents = [ids[: len(ids) - len(expected_special)] for ids in chunks["input_ids"][:]]
        assert all(
            ids[len(ids) - len(expected_special) :] == [sep] * len(expected_special) for ids in chunks["input_ids"][:]
        )
        rebuilt = contents[0] + [token for window in contents[1:] for token in window[3:]]
        assert rebuilt == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_expected_chunk_count(tiny_tokenizer):
    text = TEXTS[1]
    n_tokens = len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    max_length, overlap = 20, 5
    content = max_length - 2
    chunks = chunking.chunk_documents(
        chunking.documents_to_dataset(documents([text])), tiny_tokenizer, max_length, overlap
    )
    expected = 1 + -(-(n_tokens - content) // (content - overlap))
    assert len(chunks) == expected
    assert chunking.label_counts(chunks) == {"human": expected, "machine": 0}


def test_invalid_windows_are_rejected(tiny_tokenizer):
    with pytest.raises(UserError, match="--chunk_overlap 30"):
        chunking.check_window(tiny_tokenizer, 32, 30)
    with pytest.raises(UserError, match="no room"):
        chunking.check_window(tiny_tokenizer, 2, 0)
    assert chunking.check_window(tiny_tokenizer, 32, 29) == 30


def test_collator_drops_bookkeeping_columns_and_pads(tiny_tokenizer):
    collator = chunking.ChunkCollator(tiny_tokenizer, pad_to_multiple_of=8)
    batch = collator(
        [
            {"input_ids": [2, 5, 6, 3], "attention_mask": [1, 1, 1, 1], "labels": 1, "doc_id": 7, "length": 4},
            {"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": 0, "doc_id": 8, "length": 3},
        ]
    )
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum().item() == 7
    assert batch["labels"].tolist() == [1, 0]


def test_text_dataset_columns():
    texts = [f"document number {i}" for i in range(2500)]  # several Arrow batches
    dataset = chunking.text_dataset(texts, doc_ids=range(100, 2600), labels=[i % 2 for i in range(2500)])
    assert dataset.column_names == ["doc_id", "text", "label"]
    assert dataset["text"][:] == texts
    assert dataset["doc_id"][:] == list(range(100, 2600)) and dataset["label"][:4] == [0, 1, 0, 1]
    assert chunking.text_dataset(texts)["doc_id"][:3] == [0, 1, 2] and set(chunking.text_dataset(texts)["label"]) == {0}
    assert len(chunking.text_dataset([])) == 0


def test_truncation_and_padding_left_on_the_tokenizer_do_not_cut_documents(tiny_model_dir, monkeypatch):
    """Whatever truncation/padding state the backend holds when the batches are encoded, windows are whole."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    original_spec = chunking.window_spec

    def spec_then_truncate(*args):
        spec = original_spec(*args)
        tokenizer.backend_tokenizer.enable_truncation(max_length=10)
        tokenizer.backend_tokenizer.enable_padding(length=40)
        return spec

    monkeypatch.setattr(chunking, "window_spec", spec_then_truncate)
    check_windows(tokenizer, TEXTS, 32, 4)


def test_tokenizer_fingerprint_ignores_and_keeps_truncation_and_padding(tiny_model_dir):
    """The cache key must not change with the truncation/padding transformers leaves set per call, and taking it
    must not change them either."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    plain = chunking.tokenizer_fingerprint(tokenizer)
    backend.enable_truncation(max_length=10)
    backend.enable_padding(length=40)
    truncation, padding = backend.truncation, backend.padding
    assert chunking.tokenizer_fingerprint(tokenizer) == plain
    assert backend.truncation == truncation and backend.padding == padding
    assert truncation["max_length"] == 10 and padding["length"] == 40
