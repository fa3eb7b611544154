"""The embedded default: a small synthetic sample in M4 layout, a tokenizer trained on it and a tiny model.

Everything here is generated offline, so `python train.py --demo` and the tests need no download. The
sample imitates the real files' quirks: the same human text in every generator file of a domain, mixed
generator spellings (`chatGPT`, `dolly2`), `source_id` vs `source_ID`, `text` for `human_text`, an
`Unnamed: 0` column, list-valued texts and one row with an empty machine text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from m4_training.files import write_jsonl

DEMO_DOMAINS = ("arxiv", "wikipedia", "reddit")
# File-name spelling per generator, as in the real M4 release.
DEMO_GENERATOR_FILES = {"chatgpt": "chatGPT", "davinci": "davinci", "dolly": "dolly2", "flant5": "flant5"}
DEMO_TOPICS = (
    "battery storage",
    "river ecology",
    "quantum sensors",
    "medieval trade",
    "urban gardens",
    "solar wind",
    "protein folding",
    "jazz history",
    "glacier retreat",
    "sleep research",
    "bridge design",
    "coral reefs",
    "street food",
    "chess openings",
    "volcanic soil",
    "bird migration",
    "tax policy",
    "rail networks",
    "fermentation",
    "dark matter",
    "language learning",
    "forest fires",
    "video codecs",
    "honey bees",
    "desert plants",
    "ocean tides",
    "vaccine trials",
    "market bubbles",
    "ancient roads",
    "wind turbines",
)
HUMAN_PHRASES = (
    "honestly i think",
    "tbh",
    "lol",
    "idk why but",
    "my buddy said",
    "anyway",
    "i guess",
    "pretty sure",
    "kinda",
    "no idea if",
    "we measured",
    "our data show",
    "ran it twice and",
    "weird thing is",
    "imo",
    "back in the day",
    "i read somewhere",
    "turns out",
    "fwiw",
    "the numbers look off",
)
MACHINE_PHRASES = (
    "furthermore",
    "in conclusion",
    "it is important to note that",
    "overall",
    "additionally",
    "this highlights",
    "delve into",
    "a comprehensive overview of",
    "plays a crucial role in",
    "in summary",
    "moreover",
    "it is worth noting that",
    "a wide range of",
    "significant insights into",
    "offers valuable perspectives on",
    "ultimately",
    "the multifaceted nature of",
    "in today's world",
)
NEUTRAL_WORDS = (
    "the",
    "system",
    "results",
    "people",
    "study",
    "model",
    "data",
    "time",
    "change",
    "effect",
    "city",
    "water",
    "energy",
    "price",
    "work",
    "method",
    "group",
    "years",
    "level",
    "process",
    "region",
    "growth",
)


def _sentence(rng: random.Random, phrases: tuple[str, ...], topic: str, share: float) -> str:
    words = []
    for _ in range(rng.randint(6, 16)):
        words.append(rng.choice(phrases) if rng.random() < share else rng.choice(NEUTRAL_WORDS))
    words.insert(rng.randint(0, len(words)), topic)
    if rng.random() < 0.3:
        words.append(str(rng.randint(2, 2024)))
    return " ".join(words).capitalize() + "."


def synthetic_text(rng: random.Random, topic: str, machine: bool, n_sentences: int) -> str:
    """Each sentence leans to its class's phrases but borrows the other class's now and then."""
    own, other = (MACHINE_PHRASES, HUMAN_PHRASES) if machine else (HUMAN_PHRASES, MACHINE_PHRASES)
    return " ".join(_sentence(rng, own if rng.random() < 0.7 else other, topic, 0.15) for _ in range(n_sentences))


def write_demo_data(
    directory: str | Path, seed: int = 0, rows_per_file: int = 30, reddit_posts: int = 160
) -> tuple[Path, Path]:
    """Write the demo M4 directory and Reddit file; returns (data_dir, reddit_file)."""
    rng = random.Random(seed)
    data_dir = Path(directory) / "m4"
    data_dir.mkdir(parents=True, exist_ok=True)
    for domain in DEMO_DOMAINS:
        human_texts = [
            synthetic_text(rng, DEMO_TOPICS[i % len(DEMO_TOPICS)], False, rng.choice((2, 4, 8, 20)))
            for i in range(rows_per_file)
        ]
        for generator, file_name in DEMO_GENERATOR_FILES.items():
            rows = []
            for i, human_text in enumerate(human_texts):
                topic = DEMO_TOPICS[i % len(DEMO_TOPICS)]
                row = {
                    "prompt": f"Write about {topic}.",
                    "human_text": human_text,
                    "machine_text": synthetic_text(rng, topic, True, rng.choice((2, 4, 8, 20))),
                    "model": file_name,
                    "source": domain,
                }
                if generator == "davinci":
                    row["source_id"] = f"{domain}-{i}"
                else:
                    row["source_ID"] = f"{domain}-{i}"
                if generator == "dolly":
                    row = {"Unnamed: 0": i, **row}
                if domain == "wikipedia" and generator == "flant5":
                    row["text"] = row.pop("human_text")
                if domain == "arxiv" and generator == "chatgpt" and i == 3:
                    row["machine_text"] = ""
                if domain == "reddit" and generator == "davinci" and i == 5:
                    row["machine_text"] = row["machine_text"].split(". ")
                rows.append(row)
            write_jsonl(data_dir / f"{domain}_{file_name}.jsonl", rows)
    reddit_file = Path(directory) / "reddit_posts.jsonl"
    write_jsonl(
        reddit_file,
        [
            {
                "text": synthetic_text(rng, rng.choice(DEMO_TOPICS), False, rng.choice((1, 3, 6, 15))),
                "label": 0,
                "source": "reddit_demo",
                "timestamp": 1600000000 + 3600 * i,
                "id": f"post{i}",
            }
            for i in range(reddit_posts)
        ],
    )
    return data_dir, reddit_file


def train_demo_tokenizer(texts: list[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A small BERT-style WordPiece tokenizer trained on the given texts (offline stand-in for a hub one)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_tiny_model(vocab_size: int, seed: int = 0) -> BertForSequenceClassification:
    """A 2-layer, 64-wide BERT classifier with random weights: fast enough to train on a laptop CPU."""
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        num_labels=2,
        id2label={0: "human", 1: "machine"},
        label2id={"human": 0, "machine": 1},
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def write_demo_model(directory: str | Path, texts: list[str], seed: int = 0) -> Path:
    """Save a demo tokenizer and tiny model to `directory`, loadable with the Auto* classes."""
    directory = Path(directory)
    tokenizer = train_demo_tokenizer(texts)
    tokenizer.save_pretrained(directory)
    build_tiny_model(len(tokenizer), seed).save_pretrained(directory)
    return directory


def prepare_demo(directory: str | Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """Write the demo data and model once; returns (data_dir, reddit_file, model_dir)."""
    directory = Path(directory)
    data_dir, reddit_file = write_demo_data(directory, seed)
    model_dir = directory / "tiny-bert"
    if not (model_dir / "config.json").is_file():
        texts = [json.loads(line).get("text", "") for line in open(reddit_file, encoding="utf-8")]
        for path in sorted(data_dir.glob("*.jsonl")):
            for line in open(path, encoding="utf-8"):
                row = json.loads(line)
                texts += [str(row.get("human_text", row.get("text", ""))), str(row["machine_text"])]
        write_demo_model(model_dir, texts, seed)
    return data_dir, reddit_file, model_dir
