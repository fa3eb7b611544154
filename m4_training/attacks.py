"""RAID's adversarial attacks: cheap edits a writer makes so that a detector misses a machine-written text.

RAID (Dugan et al., ACL 2024) attacks every text of its benchmark with 11 attacks, each at a fixed rate; the
names and default rates here are RAID's (ATTACK_RATES). The rate is the share of an attack's sites that it edits.

Where this differs from RAID's code, and why: the homoglyphs come from Unicode's confusables (TR39, through the
pinned confusable-homoglyphs), every Cyrillic or Greek letter of the same case that Unicode lists for an ASCII
letter, where RAID hand-picked 24 letters, so rate 1.0 replaces more letters here; misspelling swaps two
neighbouring letters after a word's first (`receive` -> `recieve`) in a random 20% of words, where RAID took
the words GPT-2 finds likeliest and a list of common misspellings (no pinned library ships one); synonym takes
the fill-mask model's best whole-word candidate for random non-stop-words, where RAID also filtered BERT's
candidates by part of speech and fastText similarity; paraphrase is any Hugging Face seq2seq model. RAID used
DIPPER (kalpeshk2011/dipper-paraphraser-xxl, 11B parameters: a GPU pod's job), with the tokenizer of
google/t5-v1_1-xxl saved into the model's directory and the prompt `lexical = 40, order = 100 <sent> {text}
</sent>` (RAID's lexical diversity 60, order diversity 0; RAID also gave it the text paraphrased so far).

Every document is attacked with a generator seeded from (seed, attack, the document's key: its text unless
keys are given), so a document is attacked the same way whatever else is in the list, and in whatever order.
A fractional number of sites to edit (rate x sites) is rounded up with the probability of its fraction, so a
short text is attacked at the rate on average too (RAID rounds down).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from m4_training.cli import one_line

ATTACK_RATES = {  # the share of the sites edited, and the sites
    "homoglyph": 1.0,  # letters that have a look-alike in another script (Cyrillic `а` for `a`)
    "zero_width_space": 1.0,  # characters, each followed by U+200B
    "whitespace": 0.2,  # spaces, each doubled
    "upper_lower": 0.05,  # first letters of words, case flipped
    "misspelling": 0.2,  # words (RAID's data calls it perplexity_misspelling)
    "article_deletion": 0.5,  # the articles a, an, the (lower case, after a space), deleted
    "insert_paragraphs": 0.5,  # spaces between sentences, made a paragraph break
    "number": 0.5,  # numbers, every digit changed
    "alternative_spelling": 1.0,  # American spellings, made British (`color` -> `colour`)
    "synonym": 0.5,  # words, each replaced by a fill-mask model's best other word (needs a model)
    "paraphrase": 1.0,  # windows of 3 sentences, rewritten by a seq2seq model (needs a model)
}
MODEL_ATTACKS = ("synonym", "paraphrase")  # the others need nothing but the text
SYNONYM_CONTEXT_WORDS = 20  # words on each side of the masked word that the fill-mask model sees (RAID's)
SYNONYM_CANDIDATES = 10  # the fill-mask model's best tokens searched for a whole word other than the original
PARAPHRASE_SENTENCES = 3  # sentences rewritten together (RAID's)
PARAPHRASE_TOP_P = 0.75  # RAID's nucleus sampling for DIPPER

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_WORD_START = re.compile(r"\b[^\W\d_]")
_ARTICLE = re.compile(r"(?<= )(?:a|an|the) ")  # RAID's: lower case, between spaces (the following one goes too)
_SENTENCE_GAP = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’')])) +(?=\S)")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_ASCII_WORD = re.compile(r"[A-Za-z]+")
_MODEL_KIND = {"synonym": "fill-mask", "paraphrase": "seq2seq"}
_Replace = Callable[[str, np.random.Generator], str]  # a site's text -> its replacement
_Attack = Callable[[str, float, np.random.Generator], tuple[str, int]]  # (text, rate, rng) -> (attacked, sites)


def check_attack(name: str, rate: float | None = None) -> float:
    """The rate to attack at (RAID's for `name` when None); ValueError for an unknown name or a rate outside [0, 1]."""
    if name not in ATTACK_RATES:
        close = difflib.get_close_matches(name, ATTACK_RATES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(f"unknown attack {name!r}: {hint}(attacks: {', '.join(ATTACK_RATES)})")
    rate = ATTACK_RATES[name] if rate is None else rate
    if not 0 <= rate <= 1:  # NaN fails too
        raise ValueError(f"the rate of attack {name} must be between 0 and 1, got {rate}")
    return rate


def attack_texts(
    name: str,
    texts: Sequence[str],
    rate: float | None = None,
    seed: int = 0,
    keys: Sequence[str] | None = None,
    model: str | None = None,
    prompt: str = "{text}",
) -> tuple[list[str], int]:
    """The texts attacked by `name`, and how many of them it could not change (no article, no digit, ...).
    `rate` is RAID's for the attack when None; `keys` (default: the texts) seed each document's edits, e.g.
    document ids; `model` names the Hugging Face model of synonym (fill-mask) or paraphrase (seq2seq), and
    `prompt` is what paraphrase gives it, `{text}` standing for the sentences to rewrite. ValueError for a model
    that cannot be loaded."""
    rate = check_attack(name, rate)
    if name in MODEL_ATTACKS and model is None:
        raise ValueError(f"attack {name} needs a model (a {_MODEL_KIND[name]} model name or directory)")
    attack = _ATTACKS[name]
    if name == "synonym":
        attack = functools.partial(attack, fill_mask=load_attack_model(name, model))
    elif name == "paraphrase":
        if "{text}" not in prompt:
            raise ValueError(f"the paraphrase prompt must contain {{text}} (the sentences to rewrite): {prompt!r}")
        attack = functools.partial(attack, generator=load_attack_model(name, model), prompt=prompt)
    results = []  # (attacked text, sites)
    for text, key in zip(texts, texts if keys is None else keys, strict=True):
        digest = hashlib.blake2b(f"{seed}\0{name}\0{key}".encode(), digest_size=16).digest()
        results.append(attack(text, rate, np.random.default_rng(int.from_bytes(digest, "little"))))
    return [text for text, _ in results], sum(sites == 0 for _, sites in results)


def _chosen(rng: np.random.Generator, sites: int, rate: float, units: int | None = None) -> np.ndarray:
    """Indices of the sites to edit, ascending: rate x `units` (default: the sites), the fraction rounded up at
    random, at most all sites."""
    count = min(sites, int((sites if units is None else units) * rate + rng.random()))
    return np.arange(sites) if count == sites else np.sort(rng.choice(sites, count, replace=False))


def _in_case_of(word: str, replacement: str) -> str:
    if word.isupper() and len(word) > 1:
        return replacement.upper()
    return replacement.capitalize() if word[0].isupper() else replacement.lower()


def _splice(text: str, spans: Sequence[tuple[int, int]], replacements: Sequence[str]) -> str:
    """`text` with each (start, end) span, in ascending order, replaced."""
    parts, last = [], 0
    for (start, end), replacement in zip(spans, replacements, strict=True):
        parts += (text[last:start], replacement)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _sites_replaced(
    text: str, sites: list[tuple], rate: float, rng: np.random.Generator, replace: _Replace, units: int | None = None
) -> tuple[str, int]:
    """`text` with rate x `units` (default: the sites) of its `sites`, ascending (start, end) spans, replaced by
    `replace(site, rng)`; and the number of sites."""
    chosen = [sites[index] for index in _chosen(rng, len(sites), rate, units)]
    return _splice(text, chosen, [replace(text[start:end], rng) for start, end in chosen]), len(sites)


def _matches_replaced(pattern: re.Pattern, replace: _Replace) -> _Attack:
    """An attack that replaces a random share of `pattern`'s matches by `replace(match, rng)`."""
    return lambda text, rate, rng: _sites_replaced(text, [m.span() for m in pattern.finditer(text)], rate, rng, replace)


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _from_code_points(codes: np.ndarray) -> str:
    return codes.astype("<u4").tobytes().decode("utf-32-le")


@functools.cache
def _homoglyph_table() -> tuple[np.ndarray, np.ndarray]:
    """(look-alikes, counts) by ASCII code: row c holds counts[c] Cyrillic or Greek letters that look like chr(c);
    the inverse of what canonicalisation maps back (Unicode's confusables), so canonicalize() undoes the attack."""
    import unicodedata

    from m4_training.cleaning import _script_tables

    look_alikes: dict[int, list[int]] = {}
    for code, letter in sorted(_script_tables().to_latin.items()):
        name = unicodedata.name(chr(code), "")
        if name.startswith(("CYRILLIC", "GREEK")) and chr(code).isupper() == letter.isupper():
            look_alikes.setdefault(ord(letter), []).append(code)
    table = np.zeros((129, max(map(len, look_alikes.values()))), dtype=np.uint32)  # row 128: any other character
    counts = np.zeros(129, dtype=np.int64)
    for code, options in look_alikes.items():
        table[code, : len(options)] = options
        counts[code] = len(options)
    return table, counts


def _homoglyph(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    table, counts = _homoglyph_table()
    codes = _code_points(text).copy()
    rows = np.minimum(codes, 128)
    sites = np.flatnonzero(counts[rows])
    chosen = sites[_chosen(rng, len(sites), rate)]
    rows = rows[chosen]
    codes[chosen] = table[rows, (rng.random(len(chosen)) * counts[rows]).astype(np.int64)]
    return _from_code_points(codes), len(sites)


def _zero_width_space(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    codes = _code_points(text)
    return _from_code_points(np.insert(codes, _chosen(rng, len(codes), rate) + 1, ord("\u200b"))), len(codes)


def _whitespace(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    codes = _code_points(text)
    sites = np.flatnonzero(codes == ord(" "))
    return _from_code_points(np.insert(codes, sites[_chosen(rng, len(sites), rate)], ord(" "))), len(sites)


def _upper_lower(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    sites = [match.span() for match in _WORD_START.finditer(text) if match[0].swapcase() != match[0]]
    return _sites_replaced(text, sites, rate, rng, lambda letter, _: letter.swapcase())


def _misspelling(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    """Two different neighbouring letters after the first swapped (the first letter stays: the word stays legible);
    as RAID's, rate x all words are misspelt, at most every word that can be."""
    words = [match.span() for match in _WORD.finditer(text)]
    sites = [(start, end) for start, end in words if len(set(text[start + 1 : end])) > 1]
    return _sites_replaced(text, sites, rate, rng, _swap_neighbours, len(words))


def _swap_neighbours(word: str, rng: np.random.Generator) -> str:
    swaps = [i for i in range(1, len(word) - 1) if word[i] != word[i + 1]]
    i = swaps[int(rng.random() * len(swaps))]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _changed_digits(number: str, rng: np.random.Generator) -> str:
    """Every digit replaced by another one (RAID draws any digit, so some stay; here the rate is what changes)."""
    shifts = iter(rng.integers(1, 10, len(number)))
    return "".join(str((int(char) + next(shifts)) % 10) if char.isdigit() else char for char in number)


def _alternative_spelling(text: str, rate: float, rng: np.random.Generator) -> tuple[str, int]:
    """American spellings (`color`, `Color`, `COLOR`) made British in the same case, from breame's table."""
    from breame.data.spelling_constants import AMERICAN_ENGLISH_SPELLINGS as british

    sites = [
        match.span()
        for match in _ASCII_WORD.finditer(text)
        if match[0].lower() in british and match[0] in (match[0].lower(), match[0].capitalize(), match[0].upper())
    ]
    return _sites_replaced(text, sites, rate, rng, lambda word, _: _in_case_of(word, british[word.lower()]))


@functools.cache
def load_attack_model(attack: str, model: str) -> Any:
    """The model of a model attack, on the GPU when there is one: synonym's fill-mask pipeline, paraphrase's
    (tokenizer, seq2seq model); ValueError when it cannot be loaded."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        if attack == "paraphrase":
            return AutoTokenizer.from_pretrained(model), AutoModelForSeq2SeqLM.from_pretrained(model).to(device).eval()
        fill_mask = pipeline("fill-mask", model=model, device=device)
        if fill_mask.tokenizer.mask_token is None:
            raise ValueError("its tokenizer has no mask token")
        return fill_mask
    except (OSError, ValueError, KeyError) as error:
        kind = _MODEL_KIND[attack]
        raise ValueError(f"cannot load the {kind} model {model!r} of attack {attack}: {one_line(error)}") from error


def _synonym(text: str, rate: float, rng: np.random.Generator, fill_mask: Any) -> tuple[str, int]:
    """Rate x all words replaced (at most every candidate: a word of 3+ letters, not an English stop word)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = list(_WORD.finditer(text))
    sites = [i for i, match in enumerate(words) if len(match[0]) > 2 and match[0].lower() not in ENGLISH_STOP_WORDS]
    chosen = [sites[i] for i in _chosen(rng, len(sites), rate, len(words))]
    if not chosen:
        return text, len(sites)
    contexts = []
    for i in chosen:
        start = words[max(0, i - SYNONYM_CONTEXT_WORDS)].start()
        end = words[min(len(words) - 1, i + SYNONYM_CONTEXT_WORDS)].end()
        contexts.append(text[start : words[i].start()] + fill_mask.tokenizer.mask_token + text[words[i].end() : end])
    predictions = fill_mask(contexts, top_k=SYNONYM_CANDIDATES, tokenizer_kwargs={"truncation": True})
    if len(contexts) == 1:
        predictions = [predictions]
    replaced = {}  # span: the fill-mask model's best whole word other than the original
    for i, candidates in zip(chosen, predictions):
        word = words[i][0]
        tokens = (candidate["token_str"].strip() for candidate in candidates)
        if token := next((token for token in tokens if token.isalpha() and token.lower() != word.lower()), None):
            replaced[words[i].span()] = _in_case_of(word, token)
    return _splice(text, list(replaced), list(replaced.values())), len(sites)


def _paraphrase(
    text: str, rate: float, rng: np.random.Generator, generator: tuple[Any, Any], prompt: str
) -> tuple[str, int]:
    """Rate x the windows of PARAPHRASE_SENTENCES sentences rewritten, sampling as RAID did, seeded per document."""
    import torch

    tokenizer, model = generator
    sentences, size = _SENTENCE_GAP.split(text), PARAPHRASE_SENTENCES
    windows = [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]
    windows = [window for window in windows if window.strip()]
    chosen = _chosen(rng, len(windows), rate)
    if not len(chosen):
        return text, len(windows)
    inputs = tokenizer(
        [prompt.format(text=windows[i]) for i in chosen], return_tensors="pt", padding=True, truncation=True
    )
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(int(rng.integers(2**63)))
        outputs = model.generate(
            **inputs.to(model.device), do_sample=True, top_p=PARAPHRASE_TOP_P, top_k=0,
            max_new_tokens=2 * inputs["input_ids"].shape[1],
        )  # fmt: skip
    for i, rewritten in zip(chosen, tokenizer.batch_decode(outputs, skip_special_tokens=True)):
        windows[i] = rewritten.strip()
    return " ".join(windows), len(windows)


_ATTACKS: dict[str, Callable[..., tuple[str, int]]] = {
    "homoglyph": _homoglyph,
    "zero_width_space": _zero_width_space,
    "whitespace": _whitespace,
    "upper_lower": _upper_lower,
    "misspelling": _misspelling,
    "article_deletion": _matches_replaced(_ARTICLE, lambda article, rng: ""),
    "insert_paragraphs": _matches_replaced(_SENTENCE_GAP, lambda gap, rng: "\n\n"),
    "number": _matches_replaced(_NUMBER, _changed_digits),
    "alternative_spelling": _alternative_spelling,
    "synonym": _synonym,
    "paraphrase": _paraphrase,
}
