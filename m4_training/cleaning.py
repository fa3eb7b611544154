"""Cleaning of raw web text before it becomes training data: one function, `clean_text`, for every source.

This is the data-preparation stage (prepare_data.py), run once on the raw files. It removes markup that
tells a detector where a text came from rather than who wrote it: M4's human arXiv abstracts carry LaTeX
and the Reddit dumps carry HTML entities, markdown and links, while machine texts rarely do. The lighter,
training-time normalisation (whitespace, digits) is `data_loaders.normalize_text`, applied later to
every text, prepared or not.
"""

from __future__ import annotations

import html
import re

# Entities escaped more than once (`&amp;amp;lt;`) need one html.unescape per level.
MAX_UNESCAPE_ROUNDS = 5

_FENCED_CODE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HTML_CODE_BLOCK = re.compile(r"<(pre|code)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_BREAK = re.compile(r"<\s*(br|/p|p|/div|div|/li|li|/h[1-6])\b[^>]*>", re.IGNORECASE)
# A tag starts with a letter (or `/` + letter): "a < b > c" in prose is left alone.
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_LATEX_DISPLAY = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|\\begin\{(equation|align|eqnarray|math|displaymath|gather|multline)\*?\}"
    r".*?\\end\{\1\*?\}",
    re.DOTALL,
)
# Pandoc's rule for inline math: `$` + non-space ... non-space + `$` not followed by a digit, within one
# paragraph (arXiv abstracts wrap lines inside math), so prices and tickers ("$5 and $10", "$GME") stay.
_LATEX_INLINE = re.compile(r"(?<![\\$])\$(?=\S)(?:[^$\n]|\n(?![ \t]*\n)){1,300}?(?<=\S)\$(?!\d)")
# LaTeX commands outside math: references go, formatting keeps its argument (`\emph{x}` -> `x`, `\msun` -> ``).
_LATEX_REFERENCE = re.compile(r"\\(?:cite[pt]?|ref|eqref|label|url|footnote)\*?\{[^{}]*\}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+\*?(?:\{([^{}\n]*)\})?")
_MARKDOWN_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\n]*\)|\[([^\]\n]+)\]\[[^\]\n]*\]")
_MARKDOWN_LINK_DEFINITION = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)
# A URL's last character is not sentence punctuation ("see www.x.org." keeps its full stop).
_URL = re.compile(r"<?\b(?:https?://|ftp://|www\.)[^\s<>()\[\]]*[^\s<>()\[\].,;:!?'\"]>?", re.IGNORECASE)
_MARKDOWN_HEADER = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_MARKDOWN_SETEXT_RULE = re.compile(r"^[ \t]*(?:[-=*_][ \t]*){3,}$", re.MULTILINE)
_BLOCKQUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
# `**` is never literal in prose, so a bold span may have spaces inside; `__` may be (`__init__`), so not.
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(?=\S)(.+?)(?<=\S)__", re.DOTALL)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.DOTALL)
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
# Underscores inside words (snake_case) are not emphasis.
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# A run of whitespace other than line breaks; a single space is left alone (matching every space would make one
# Python string per word of the text in re.sub: ten times its size for a 48 MB document).
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_BLANK_LINES = re.compile(r"\n{3,}")


def unescape_entities(text: str) -> str:
    """Decode HTML entities, including entities escaped several times (`&amp;amp;` -> `&`)."""
    for _ in range(MAX_UNESCAPE_ROUNDS):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def _strip_markdown(text: str) -> str:
    text = _MARKDOWN_HEADER.sub(r"\1", text)
    text = _MARKDOWN_SETEXT_RULE.sub("", text)
    text = _BLOCKQUOTE.sub("", text)
    text = _BOLD.sub(lambda match: match.group(1) or match.group(2), text)
    text = _STRIKE.sub(r"\1", text)
    text = _ITALIC_STAR.sub(r"\1", text)
    return _ITALIC_UNDERSCORE.sub(r"\1", text)


def _normalize_whitespace(text: str) -> str:
    """Runs of spaces become one space, lines are trimmed, and at most one blank line separates paragraphs."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def clean_text(text: str) -> str:
    """Remove markup from one text; the order matters.

    Entities are decoded first (an escaped `&lt;b&gt;` is a tag too), code blocks go before tags and
    markdown (their content is not prose), URLs go before emphasis (their underscores are not emphasis),
    and whitespace is normalised last.
    """
    text = unescape_entities(text)
    text = _FENCED_CODE.sub("\n", text)
    text = _HTML_CODE_BLOCK.sub(" ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    text = _LATEX_DISPLAY.sub(" ", text)
    text = _LATEX_INLINE.sub(" ", text)
    text = _LATEX_REFERENCE.sub(" ", text)
    text = _LATEX_COMMAND.sub(lambda match: match.group(1) or "", text)
    text = _MARKDOWN_IMAGE.sub(r"\1", text)
    text = _MARKDOWN_LINK.sub(lambda match: match.group(1) or match.group(2), text)
    text = _MARKDOWN_LINK_DEFINITION.sub("", text)
    text = _URL.sub(" ", text)
    text = _strip_markdown(text)
    return _normalize_whitespace(text)
