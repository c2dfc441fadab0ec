"""Render a hand-off card as the agents' channel shows it, for the README and the docs.

    .venv/bin/python scripts/render_handoff_card.py [docs/img/handoff-card.png]

The blocks are the desk's own (``handoff.slack_desk.card_blocks``) for a queued
conversation; this script draws them the way Slack lays out Block Kit (sections,
two-column fields, context, buttons) in headless Chromium and saves a PNG.
Slack's own fonts and emoji differ a little. Needs Chromium (``CHROMIUM_PATH``,
default /usr/bin/chromium) and Playwright, as the browser tests do.
"""

from __future__ import annotations

import html
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from handoff.queue import QueueItem  # noqa: E402
from handoff.slack_desk import card_blocks  # noqa: E402

EMOJI = {"hourglass": "⌛", "speech_balloon": "💬", "white_check_mark": "✅", "lock": "🔒", "label": "🏷️", "memo": "📝"}


def example() -> list[dict]:
    """A shopper who asked twice about a late parcel, got angrier, and asked for a person."""
    item = QueueItem(
        conversation_id="web:default:5f1c0e9a2b7d4c61",
        channel="web",
        status="queued",
        priority=2,
        reason="angry",
        waiting_s=94,
        locale="en",
        last_intents=["track_order", "complaint", "contact_human_agent"],
        sentiment_scores=[0.0, -0.4, -0.9],
        agent=None,
        last_messages=[
            {"from": "shopper", "text": "where is my order 10021? it was due on monday"},
            {"from": "bot", "text": "Order 10021 is in transit with SF Express, expected on 4 Dec."},
            {"from": "shopper", "text": "that's what you said last week. this is ridiculous"},
            {"from": "bot", "text": "I'm sorry about that. I'm passing you to a colleague now."},
            {"from": "shopper", "text": "just get me a real person please"},
        ],
    )
    return card_blocks(item, {"sender": "Web shopper 5f1c0e9a"}, position=1, total=3)


def mrkdwn(text: str) -> str:
    """Slack's mrkdwn (already escaped with &amp; &lt; &gt;) as HTML."""
    out = html.escape(html.unescape(text), quote=False)
    out = re.sub(r"&lt;!date\^\d+\^[^|]*\|([^&]*)&gt;", r"\1", out)
    out = re.sub(r"&lt;@([A-Z0-9]+)&gt;", r'<span class="mention">@\1</span>', out)
    out = re.sub(r":([a-z_]+):", lambda m: EMOJI.get(m.group(1), m.group(0)), out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", out)
    return out.replace("\n", "<br>")


def block_html(b: dict) -> str:
    if b["type"] == "section" and "fields" in b:
        cells = "".join(f'<div class="field">{mrkdwn(f["text"])}</div>' for f in b["fields"])
        return f'<div class="fields">{cells}</div>'
    if b["type"] == "section":
        return f'<div class="section">{mrkdwn(b["text"]["text"])}</div>'
    if b["type"] == "context":
        return "".join(f'<div class="context">{mrkdwn(e["text"])}</div>' for e in b["elements"])
    if b["type"] == "actions":
        buttons = "".join(
            f'<span class="button {e.get("style", "")}">{html.escape(e["text"]["text"])}</span>' for e in b["elements"]
        )
        return f'<div class="actions">{buttons}</div>'
    return ""


PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #fff; font: 15px/1.46 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Color Emoji", sans-serif; color: #1d1c1d; }}
.channel {{ border-bottom: 1px solid #ddd; padding: 10px 20px; font-weight: 700; font-size: 17px; }}
.msg {{ display: flex; gap: 8px; padding: 12px 20px; width: 640px; }}
.avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #4a154b; color: #fff; font-weight: 700;
  display: flex; align-items: center; justify-content: center; flex: none; }}
.name {{ font-weight: 900; }} .app {{ background: #e8e8e8; color: #616061; font-size: 10px; padding: 1px 3px;
  border-radius: 2px; margin: 0 4px; font-weight: 700; }} .time {{ color: #616061; font-size: 12px; }}
.section, .fields, .context, .actions {{ margin: 6px 0; }}
.fields {{ display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; }}
.context {{ color: #616061; font-size: 13px; }}
code {{ background: #f6f6f6; border: 1px solid #ddd; border-radius: 3px; color: #e01e5a; font-size: 12px;
  padding: 1px 3px; }}
.mention {{ background: #e8f5fa; color: #1264a3; }}
.button {{ display: inline-block; border: 1px solid #bbb; border-radius: 4px; padding: 4px 12px; margin-right: 8px;
  font-weight: 700; font-size: 13px; }}
.button.primary {{ background: #007a5a; border-color: #007a5a; color: #fff; }}
.button.danger {{ color: #e01e5a; }}
.thread {{ color: #1264a3; font-size: 13px; font-weight: 700; margin-top: 6px; }}
</style></head><body><div class="channel"># shop-agents</div>
<div class="msg" id="card"><div class="avatar">sb</div><div><div><span class="name">shopbot</span><span class="app">APP
</span><span class="time">{time}</span></div>{blocks}<div class="thread">5 replies · the conversation, live</div>
</div></div></body></html>"""


def main(out: str = "docs/img/handoff-card.png") -> int:
    from playwright.sync_api import sync_playwright

    page_html = PAGE.format(time=time.strftime("%H:%M"), blocks="".join(block_html(b) for b in example()))
    target = ROOT / out
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])  # fmt: skip
        page = browser.new_page(device_scale_factor=1)
        page.set_content(page_html)
        page.locator("#card").screenshot(path=str(target))
        browser.close()
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
