"""Cheap language detection (zh / en / other) before the models run.

Script ratios decide: Han characters mean Chinese unless Japanese kana or
Korean Hangul are present; Latin text is English unless it reads clearly as
another Latin-script language (accents and common function words).
"""

from __future__ import annotations

import re
import unicodedata

ZH, EN, OTHER = "zh", "en", "other"
LANGUAGES = (ZH, EN, OTHER)

_WORD = re.compile(r"[a-zà-öø-ÿ']+")
_EN_WORDS = frozenset(
    "the a an and or is are was were be to of in on for with my me i you your it this that "
    "can could would will how what where when why do does did not no have has had order please "
    "want need help get refund money account cancel".split()
)
# Frequent words of other Latin-script languages that are rare in English.
_OTHER_WORDS = frozenset(
    "el la los las del que por para con una mi pedido quiero dónde donde está gracias "
    "le les des du est et une je mon ma ne pas pour avec commande où merci "
    "der die das und ist nicht ich mein meine wo bestellung danke bitte "
    "o os um uma meu minha não obrigado "
    "il di che non sono dove grazie "
    "het een ik niet waar bedankt".split()
)


def _script(ch: str) -> str:
    cp = ord(ch)
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F:
        return "han"
    if 0x3040 <= cp <= 0x30FF:
        return "kana"
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF:
        return "hangul"
    if ch.isascii():
        return "latin" if ch.isalpha() else "none"
    if ch.isalpha():
        name = unicodedata.name(ch, "")
        return "latin" if name.startswith("LATIN") else "other"
    return "none"


def detect_language(text: str) -> str:
    """Return ``"zh"``, ``"en"`` or ``"other"`` for one message."""
    counts = {"han": 0, "kana": 0, "hangul": 0, "latin": 0, "other": 0}
    for ch in text:
        s = _script(ch)
        if s != "none":
            counts[s] += 1
    letters = sum(counts.values())
    if letters == 0:
        return OTHER
    if counts["kana"] or counts["hangul"] > counts["han"]:
        return OTHER
    # A Han character carries about a word, four Latin letters or so:
    # "iPhone 15 手机壳有货吗" is Chinese.
    if counts["han"] and counts["han"] * 4 >= counts["latin"]:
        return ZH
    if counts["latin"] >= max(counts["other"], 1) and counts["latin"] * 2 > letters:
        words = _WORD.findall(text.lower())
        en = sum(w in _EN_WORDS for w in words)
        other = sum(w in _OTHER_WORDS for w in words)
        accents = sum(1 for ch in text if not ch.isascii() and _script(ch) == "latin")
        if other > en or (accents >= 2 and en == 0):
            return OTHER
        return EN
    return OTHER
