"""Masking personal data: e-mail addresses, phone numbers and card-like numbers, in English and Chinese formats.

``mask(text)`` replaces each with a placeholder (``[email]``, ``[phone]``,
``[card]``). The logs pass every line through it (``shopbot.logs``), and every
export of a transcript is masked; the transcripts themselves keep the text,
which agents need to help the shopper.

Full-width digits and signs (``１３８``, ``＋``, ``＠``), as Chinese input methods
type them, are read as their ASCII twins. Order numbers (up to 12 digits),
prices, dates and times are left alone.
"""

from __future__ import annotations

import re

# Full-width forms -> ASCII, one character for one, so positions stay the same.
_WIDE = str.maketrans(
    {chr(0xFF10 + i): str(i) for i in range(10)} | {"＋": "+", "－": "-", "（": "(", "）": ")", "＠": "@", "．": "."}
)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, in groups split by single spaces or dashes: payment cards (and Chinese ID numbers, 18 digits).
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])(?:[Xx](?![A-Za-z]))?")
# +86 138 1234 5678, +1 (415) 555-0100: before the card pattern, which would take the digits after the +.
INTL_PHONE = re.compile(r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}")
PHONE = re.compile(
    "|".join(
        [
            r"(?<![\d])1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?![\d])",  # 中国手机 13812345678, 138-1234-5678
            r"(?<![\d])(?:\(0\d{2,3}\)|0\d{2,3}-)[ ]?\d{7,8}(?![\d])",  # 座机 010-12345678, (0755)1234567
            r"(?<![\d])(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\d])",  # (415) 555-0100, 415-555-0100
        ]
    )
)


def mask(text: str) -> str:
    if not text or not any(ch.isdigit() or ch in "@＠" for ch in text):
        return text
    probe = text.translate(_WIDE)
    spans: list[tuple[int, int, str]] = []
    for pattern, label in ((EMAIL, "[email]"), (INTL_PHONE, "[phone]"), (CARD, "[card]"), (PHONE, "[phone]")):
        for m in pattern.finditer(probe):
            if sum(ch.isdigit() for ch in m.group()) < 7 and label != "[email]":
                continue
            if not any(s < m.end() and m.start() < e for s, e, _ in spans):
                spans.append((m.start(), m.end(), label))
    if not spans:
        return text
    out, pos = [], 0
    for s, e, label in sorted(spans):
        out += [text[pos:s], label]
        pos = e
    out.append(text[pos:])
    return "".join(out)
