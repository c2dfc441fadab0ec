"""Training-time noise: typo'd copies of Latin-script examples.

Shoppers type fast on phones. The tokenizer splits a misspelt word into
unfamiliar pieces, so the model must see misspellings in training: each chosen
example gets a copy with one or two slips of a finger (a neighbouring key, a
letter dropped, doubled or swapped, two words run together).
"""

from __future__ import annotations

import random

from .data import Example

_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
_NEIGHBOURS: dict[str, str] = {}
for r, row in enumerate(_ROWS):
    for c, ch in enumerate(row):
        near = [row[c + d] for d in (-1, 1) if 0 <= c + d < len(row)]
        near += [_ROWS[r + d][c] for d in (-1, 1) if 0 <= r + d < len(_ROWS) and c < len(_ROWS[r + d])]
        _NEIGHBOURS[ch] = "".join(near)


def misspell(text: str, rng: random.Random, slips: int = 2) -> str | None:
    """``text`` with up to ``slips`` typing errors in its Latin words, or None
    when it has no Latin word long enough to misspell."""
    chars = list(text)
    done = 0
    for _ in range(slips):
        spots = [
            i for i in range(1, len(chars) - 1) if chars[i].isascii() and chars[i].isalpha() and chars[i - 1].isalpha()
        ]
        if not spots:
            break
        i = rng.choice(spots)
        op = rng.randrange(5)
        lower = chars[i].lower()
        if op == 0 and lower in _NEIGHBOURS:
            chars[i] = rng.choice(_NEIGHBOURS[lower])
        elif op == 1:
            del chars[i]
        elif op == 2:
            chars.insert(i, chars[i])
        elif op == 3 and chars[i + 1].isalpha():
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            spaces = [j for j, ch in enumerate(chars) if ch == " "]
            if not spaces:
                continue
            del chars[rng.choice(spaces)]
        done += 1
    return "".join(chars) if done else None


def add_typo_copies(examples: list[Example], fraction: float, seed: int) -> list[Example]:
    """``examples`` plus a misspelt copy of about ``fraction`` of them."""
    if fraction <= 0:
        return examples
    rng = random.Random(seed)
    extra = []
    for e in examples:
        if rng.random() < fraction:
            noisy = misspell(e.text, rng, slips=rng.choice((1, 2)))
            if noisy and noisy != e.text:
                extra.append(Example(noisy, e.label, e.source, e.flags))
    return examples + extra
