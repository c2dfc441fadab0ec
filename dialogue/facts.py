"""One source of truth: the policies' texts may not state a number the shop's data does not.

    python -m dialogue.facts [--policies FILE] [--database-url URL]

Facts (delivery times and prices, the return window, contact hours) belong in the
shop's data: the FAQ, the catalogue. The policies file keeps wording, and quotes
an FAQ answer with ``{faq[ENTRY]}``. This check reads every text of the policies
(messages, small talk, intents) and reports each number or range in it ("3-5",
"14.90", "9:00") that appears nowhere in the shop's FAQ answers or product prices,
and each ``faq: ENTRY`` / ``{faq[ENTRY]}`` that names an entry the shop lacks.
Workers run it at start and log what it finds; exit status 1 when it finds any.
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from .policy import Policy, load_policy

# A number, or a range of two ("3-5", "9:00-18:00", "1 至 3"), with decimals or a time's minutes.
NUMBER = re.compile(r"\d+(?:[.:]\d+)?(?:\s*(?:-|–|~|至|到)\s*\d+(?:[.:]\d+)?)?")


@dataclass(frozen=True)
class Finding:
    where: str  # messages.too_late.en, intents.delivery_options.zh, ...
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _numbers(text: str) -> set[str]:
    return {re.sub(r"\s+", "", m.group(0)).replace("–", "-").replace("至", "-").replace("到", "-")
            for m in NUMBER.finditer(text)}  # fmt: skip


def _literal(template: str) -> tuple[str, list[str]]:
    """The template's fixed text (placeholders left out) and the FAQ entries it quotes."""
    parts, quoted = [], []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field and (m := re.fullmatch(r"faq\[(.+)\]", field)):
            quoted.append(m.group(1))
        parts.append(" ")
    return "".join(parts), quoted


def _texts(policy: Policy) -> Iterable[tuple[str, str]]:
    for name, langs in policy.messages.items():
        for lang, text in langs.items():
            if isinstance(text, str):
                yield f"messages.{name}.{lang}", text
    for name, talk in policy.small_talk.items():
        for lang, text in talk.reply.items():
            yield f"small_talk.{name}.reply.{lang}", text
    for lang, text in policy.out_of_scope.items():
        yield f"messages.out_of_scope.{lang}", text
    for name, ip in policy.intents.items():
        for lang, text in ip.texts.items():
            yield f"intents.{name}.{lang}", text


def check(policy: Policy, faq_answers: dict[str, list[str]], prices: Iterable[str] = ()) -> list[Finding]:
    """What the policies state that the shop's data (FAQ answers by entry id, product prices) does not."""
    known: set[str] = set()
    for answers in faq_answers.values():
        for a in answers:
            known |= _numbers(a)
    for p in prices:
        known |= _numbers(str(p))
    findings = []
    for where, template in _texts(policy):
        text, quoted = _literal(template)
        for entry in quoted:
            if entry not in faq_answers:
                findings.append(Finding(where, f"quotes FAQ entry '{entry}', which the shop does not have"))
        for n in sorted(_numbers(text) - known):
            findings.append(Finding(where, f"states '{n}', which is in none of the shop's FAQ answers or prices"))
    for name, ip in policy.intents.items():
        for key, ids in (("faq", ip.faq), ("related_faq", ip.related_faq)):
            for entry in ids:
                if entry not in faq_answers:
                    findings.append(Finding(f"intents.{name}.{key}", f"FAQ entry '{entry}' is not in the shop's FAQ"))
    return findings


def check_shop(policy: Policy, shop) -> list[Finding]:
    """:func:`check` against a :class:`dialogue.shop.Shop` (its FAQ and catalogue as loaded)."""
    shop.refresh()  # a no-op right after the worker loaded the shop
    faq = {e.id: list(e.answer.values()) for e in shop.kb.entries}
    prices = [f"{p.price:.2f}" for p in shop.catalog.products]
    if not faq and not prices:
        return []  # no shop data loaded yet: nothing to hold the texts against
    return check(policy, faq, prices)


def main(argv: list[str] | None = None) -> int:
    from sqlalchemy import select

    from shopbot.db import engine_for
    from shopbot.settings import Settings

    from . import shop_data as t

    ap = argparse.ArgumentParser(prog="python -m dialogue.facts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", help="the policies file (default: SHOPBOT_POLICIES_FILE or the packaged one)")
    ap.add_argument("--database-url", help="the shop's database (default: SHOPBOT_DATABASE_URL)")
    args = ap.parse_args(argv)
    settings = Settings()
    policy = load_policy(args.policies or settings.policies_file)
    engine = engine_for(args.database_url or settings.database_url)
    with engine.connect() as conn:
        faq = {r.id: [a for a in (r.answer_en, r.answer_zh) if a] for r in conn.execute(select(t.faq))}
        prices = [str(r.price) for r in conn.execute(select(t.products.c.price))]
    findings = check(policy, faq, prices)
    for f in findings:
        print(f)
    print(f"{len(findings)} finding(s)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
