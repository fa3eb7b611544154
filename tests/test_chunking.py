"""Windows reproduce each document's token sequence exactly, with the requested overlap."""

from __future__ import annotations

import pytest

import chunking
from data_loaders import Document
from errors import UserError

TEXTS = [
    "short text",
    " ".join(f"word{i} and more" for i in range(200)),
    "Über café naïve — emojis 🙂 and ünïcödé " * 30,
    "x",
]


def documents(texts):
    return [Document(i + 10, t, i % 2, "arxiv", "human" if i % 2 == 0 else "chatgpt", [], i) for i, t in
            enumerate(texts)]


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


def test_expected_chunk_count(tiny_tokenizer):
    text = TEXTS[1]
    n_tokens = len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    max_length, overlap = 20, 5
    content = max_length - 2
    chunks = chunking.chunk_documents(chunking.documents_to_dataset(documents([text])), tiny_tokenizer, max_length,
                                      overlap)
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
    batch = collator([
        {"input_ids": [2, 5, 6, 3], "attention_mask": [1, 1, 1, 1], "labels": 1, "doc_id": 7, "length": 4},
        {"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": 0, "doc_id": 8, "length": 3},
    ])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum().item() == 7
    assert batch["labels"].tolist() == [1, 0]
