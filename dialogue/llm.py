"""An optional large language model: rephrases the bot's answers and answers open questions, from facts only.

Any endpoint that speaks OpenAI's chat completions protocol will do
(``SHOPBOT_LLM_BASE_URL``, ``SHOPBOT_LLM_MODEL``, ``SHOPBOT_LLM_API_KEY``).

- An answer built from the shop's data (an order's status, an FAQ answer, products)
  is sent to the model with those facts and comes back reworded.
- A message the bot could not answer with certainty gets one try: the model
  sees the closest FAQ entries and may answer from them, or say it cannot.

The model never has the last word on facts: a reply that carries a number
(an order number, a price, a date, a tracking code) the facts do not contain is
thrown away and the template is sent. So are slow answers (``SHOPBOT_LLM_TIMEOUT_S``),
errors and empty answers. Without the settings nothing here runs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

import httpx

from shopbot.pii import mask

log = logging.getLogger(__name__)

NO_ANSWER = "NO_ANSWER"
_NUMBER = re.compile(r"[A-Za-z]*\d[\dA-Za-z]*(?:[.,:/-]\d+)*")
LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese"}

REPHRASE = (
    "You are the customer-service assistant of an online shop. Rewrite the draft reply so it sounds natural "
    "and friendly, in {language}. Use only the facts given; do not add any number, date, price, order number, "
    "tracking code, policy or promise that is not in them. Keep it short. Reply with the rewritten text only."
)
ANSWER = (
    "You are the customer-service assistant of an online shop. Answer the shopper's question in {language} "
    "using only the facts below. If the facts do not answer it, reply with exactly " + NO_ANSWER + ". "
    "Never invent numbers, dates, prices, order details or policies. Keep it short."
)


def numbers(text: str) -> set[str]:
    """Tokens that state a fact: anything with a digit (10023, 5.90, 2026-11-25, SF1400512345678)."""
    return {m.group(0).strip(".,:/-").lower() for m in _NUMBER.finditer(text)}


def grounded(answer: str, sources: list[str]) -> bool:
    """Every number in the answer appears in the facts or in the shopper's own message."""
    known = set().union(*(numbers(s) for s in sources)) if sources else set()
    digits_known = {re.sub(r"\D", "", k) for k in known}
    for token in numbers(answer):
        if token in known or re.sub(r"\D", "", token) in digits_known:
            continue
        return False
    return True


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 8.0

    @classmethod
    def from_settings(cls, settings) -> LLMConfig | None:
        if not (settings.llm_base_url and settings.llm_model):
            return None
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return cls(settings.llm_base_url.rstrip("/"), settings.llm_model, key, settings.llm_timeout_s)


class LLM:
    def __init__(self, config: LLMConfig):
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.Client(base_url=config.base_url, headers=headers, timeout=config.timeout_s)

    def chat(self, system: str, user: str) -> str | None:
        """The model's reply, or None (timeout, error, an answer we cannot read); never raises."""
        body = {
            "model": self.config.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0.2,
        }
        try:
            resp = self._client.post("/chat/completions", json=body)
            resp.raise_for_status()
            text = resp.json()["choices"][0]["message"]["content"]
        except httpx.TimeoutException:
            log.warning("LLM timed out; the template answer is used", extra={"timeout_s": self.config.timeout_s})
            return None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("LLM failed; the template answer is used: %s", type(exc).__name__)
            return None
        return text.strip() if isinstance(text, str) and text.strip() else None

    def rephrase(self, draft: str, facts: tuple[str, ...], question: str, lang: str) -> str | None:
        system = REPHRASE.format(language=LANGUAGE_NAMES.get(lang, "English"))
        # What the shopper wrote leaves masked (phone numbers, e-mail addresses, card numbers): the
        # model needs the question, not the personal data in it. The facts are the shop's own.
        shown = "\n".join(f"- {f}" for f in facts)
        user = f"Facts:\n{shown}\n\nShopper: {mask(question)}\n\nDraft reply: {draft}"
        out = self.chat(system, user)
        return out if out and NO_ANSWER not in out and grounded(out, [*facts, draft, question]) else None

    def answer(self, question: str, facts: tuple[str, ...], lang: str) -> str | None:
        system = ANSWER.format(language=LANGUAGE_NAMES.get(lang, "English"))
        user = "Facts:\n" + "\n".join(f"- {f}" for f in facts) + f"\n\nShopper: {mask(question)}"
        out = self.chat(system, user)
        if not out or NO_ANSWER in out:
            return None
        return out if grounded(out, [*facts, question]) else None

    def polish(self, replies, question: str, lang: str):
        """The step's replies with the model's wording where it kept to the facts; the rest unchanged."""
        out = []
        for r in replies:
            text = None
            if r.sender == "bot" and r.facts:
                if r.kind == "fallback":
                    text = self.answer(question, r.facts, lang)
                    if text is not None:
                        r = replace(r, quick_replies=())
                else:
                    text = self.rephrase(r.text, r.facts, question, lang)
            out.append(replace(r, text=text) if text else r)
        return tuple(out)
