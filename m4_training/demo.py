"""The embedded default: a small synthetic sample in M4 layout, a tokenizer trained on it and a tiny model.

Everything here is generated offline, so `python train.py --demo` and the tests need no download. The
sample imitates the real files' quirks: the same human text in every generator file of a domain, mixed
generator spellings (`chatGPT`, `dolly2`), `source_id` vs `source_ID`, `text` for `human_text`, an
`Unnamed: 0` column, list-valued texts and one row with an empty machine text.
"""

from __future__ import annotations

import json
import random
import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

from m4_training.files import write_jsonl
from m4_training.modeling import ID2LABEL, LABEL2ID

TOY_NOTE = (
    "This was the demo: a generated toy sample, whose machine texts are written in stock phrases of their own, "
    "and a tiny model trained for seconds. Its scores show that the pipeline works end to end, not how well "
    "machine text can be detected: real M4 text needs a real encoder and real data (README, Quick start)."
)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEMO_DOMAINS = ("arxiv", "wikipedia", "reddit")
# File-name spelling per generator, as in the real M4 release.
DEMO_GENERATOR_FILES = {"chatgpt": "chatGPT", "davinci": "davinci", "dolly": "dolly2", "flant5": "flant5"}
DEMO_TOPICS = tuple(
    "battery storage, river ecology, quantum sensors, medieval trade, urban gardens, solar wind, "
    "protein folding, jazz history, glacier retreat, sleep research, bridge design, coral reefs, "
    "street food, chess openings, volcanic soil, bird migration, tax policy, rail networks, fermentation, "
    "dark matter, language learning, forest fires, video codecs, honey bees, desert plants, ocean tides, "
    "vaccine trials, market bubbles, ancient roads, wind turbines".split(", ")
)
# Each class writes in its own register: the human texts casual and first-person, the machine texts formal
# and formulaic, each generator with a few pet phrases of its own on top of the shared machine style. The two
# registers share no word (only NEUTRAL_WORDS and the topics are common), and a text borrows from the other
# register only now and then, so a 2-layer model learns the difference in seconds, including for a
# generator held out of training. A toy: real machine text is far harder to tell apart.
HUMAN_PHRASES = tuple(
    "honestly i think, tbh, lol, idk why but, my buddy said, anyway, i guess, pretty sure, kinda, "
    "no idea if, we measured, ran twice and, weird thing tho, imo, ages ago, i read somewhere, turns out, "
    "fwiw, numbers look way off, my old prof, gonna try again, ugh".split(", ")
)
MACHINE_PHRASES = tuple(
    "furthermore, in conclusion, it is important to note that, overall, additionally, this highlights, "
    "a comprehensive overview of, plays a crucial role in, in summary, moreover, it is worth noting that, "
    "a wide range of, significant insights into, offers valuable perspectives on, ultimately, "
    "the multifaceted nature of, in today's world, various factors".split(", ")
)
GENERATOR_PHRASES = {
    "chatgpt": ("delve into", "a rich tapestry of", "navigate the complexities"),
    "davinci": ("in this article", "as mentioned above", "the following points"),
    "dolly": ("according to experts", "generally speaking", "a key consideration"),
    "flant5": ("the answer is", "this is because", "in other words"),
}
NEUTRAL_WORDS = tuple(
    "the system results people study model data time change effect city water energy price work method group "
    "years level process region growth".split()
)
TEXT_SENTENCES = (2, 3, 5, 8)  # sentences of an M4 text (a few need two windows of 128 tokens)
POST_SENTENCES = (1, 2, 3, 5)  # ... of a Reddit post
OWN_PHRASE_SHARE = 0.35  # share of a sentence's words that are phrases of its own register
BORROWED_PHRASE_SHARE = 0.02  # ... and of the other register


def _sentence(rng: random.Random, own: tuple[str, ...], other: tuple[str, ...], topic: str, ending: str) -> str:
    words = []
    for _ in range(rng.randint(5, 12)):
        draw = rng.random()
        if draw < OWN_PHRASE_SHARE:
            words.append(rng.choice(own))
        elif draw < OWN_PHRASE_SHARE + BORROWED_PHRASE_SHARE:
            words.append(rng.choice(other))
        else:
            words.append(rng.choice(NEUTRAL_WORDS))
    words.insert(rng.randint(0, len(words)), topic)
    if rng.random() < 0.3:
        words.append(str(rng.randint(2, 2024)))
    return " ".join(words).capitalize() + ending


def synthetic_text(rng: random.Random, topic: str, generator: str | None, n_sentences: int) -> str:
    """A text on `topic` in the human register (`generator` None) or in the machine register of `generator`."""
    if generator is None:
        own, other, endings = HUMAN_PHRASES, MACHINE_PHRASES, (".", "!", "...", "?")
    else:
        own, other, endings = MACHINE_PHRASES + GENERATOR_PHRASES[generator], HUMAN_PHRASES, (".", ".", ";")
    return " ".join(_sentence(rng, own, other, topic, rng.choice(endings)) for _ in range(n_sentences))


def write_demo_data(
    directory: str | Path, seed: int = 0, rows_per_file: int = 30, reddit_posts: int = 160
) -> tuple[Path, Path]:
    """Write the demo M4 directory and Reddit file; returns (data_dir, reddit_file)."""
    rng = random.Random(seed)
    data_dir = Path(directory) / "m4"
    data_dir.mkdir(parents=True, exist_ok=True)
    topics = [DEMO_TOPICS[i % len(DEMO_TOPICS)] for i in range(rows_per_file)]
    for domain in DEMO_DOMAINS:
        human_texts = [synthetic_text(rng, topic, None, rng.choice(TEXT_SENTENCES)) for topic in topics]
        for generator, file_name in DEMO_GENERATOR_FILES.items():
            rows = []
            for i, (topic, human_text) in enumerate(zip(topics, human_texts)):
                machine_text = synthetic_text(rng, topic, generator, rng.choice(TEXT_SENTENCES))
                row = {"prompt": f"Write about {topic}.", "human_text": human_text, "machine_text": machine_text}
                row |= {"model": file_name, "source": domain}
                row["source_id" if generator == "davinci" else "source_ID"] = f"{domain}-{i}"
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
    posts = []
    for i in range(reddit_posts):
        text = synthetic_text(rng, rng.choice(DEMO_TOPICS), None, rng.choice(POST_SENTENCES))
        posts.append(
            {"text": text, "label": 0, "source": "reddit_demo", "timestamp": 1600000000 + 3600 * i, "id": f"post{i}"}
        )
    reddit_file = Path(directory) / "reddit_posts.jsonl"
    write_jsonl(reddit_file, posts)
    return data_dir, reddit_file


def demo_vocabulary(texts: Iterable[str], vocab_size: int = 1000) -> dict[str, int]:
    """WordPiece vocabulary: special tokens, single characters (so no ASCII word is unknown), then whole words by
    count after the tokenizer's own normalisation, ties by spelling: the same texts always give the same vocabulary
    (the tokenizers WordPiece trainer breaks ties differently from one run to the next, and so would change the model).
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    characters = sorted(set(string.ascii_lowercase + string.digits + string.punctuation).union(*counts))
    vocabulary = [*SPECIAL_TOKENS, *characters, *(f"##{character}" for character in characters)]
    known = set(vocabulary)
    ranked = sorted((word for word in counts if word not in known), key=lambda word: (-counts[word], word))
    vocabulary += ranked[: max(0, vocab_size - len(vocabulary))]
    return {token: index for index, token in enumerate(vocabulary)}


def train_demo_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A small deterministic BERT-style WordPiece tokenizer on the given texts (an offline stand-in for a hub one)."""
    tokenizer = Tokenizer(models.WordPiece(demo_vocabulary(texts, vocab_size), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    special_tokens = [(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=special_tokens
    )
    special = {f"{name}_token": f"[{name.upper()}]" for name in ("unk", "pad", "cls", "sep", "mask")}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=512, model_input_names=["input_ids", "attention_mask"], **special
    )


def build_tiny_model(vocab_size: int, seed: int = 0) -> BertForSequenceClassification:
    """A 2-layer, 64-wide BERT classifier with random weights: fast enough to train on a laptop CPU."""
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    config = BertConfig(vocab_size=vocab_size, id2label=ID2LABEL, label2id=LABEL2ID, **sizes)
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)


def prepare_demo(directory: str | Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """Write the demo data and, once, a tiny model and tokenizer for the Auto* classes: (data, reddit, model dirs)."""
    directory = Path(directory)
    data_dir, reddit_file = write_demo_data(directory, seed)
    model_dir = directory / "tiny-bert"
    if not (model_dir / "config.json").is_file():
        texts = [json.loads(line).get("text", "") for line in open(reddit_file, encoding="utf-8")]
        for path in sorted(data_dir.glob("*.jsonl")):
            for line in open(path, encoding="utf-8"):
                row = json.loads(line)
                texts += [str(row.get("human_text", row.get("text", ""))), str(row["machine_text"])]
        tokenizer = train_demo_tokenizer(texts)
        tokenizer.save_pretrained(model_dir)
        build_tiny_model(len(tokenizer), seed).save_pretrained(model_dir)
    return data_dir, reddit_file, model_dir
