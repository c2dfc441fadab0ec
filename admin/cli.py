"""Admin commands, run where the product runs (same settings, same database, same Redis):

    python -m admin channels list
    python -m admin channels set telegram shop --bot-token - [--webhook-secret S]
    python -m admin channels set slack main --bot-token - --signing-secret - --agent-channel C0AGENTS
        [--team-id T0123ABCD] [--desk-agent U0123ABCD ...]
    python -m admin channels set web site --allowed-origin https://shop.example.com
    python -m admin channels test telegram shop
    python -m admin channels remove telegram shop
    python -m admin tokens create --name alice --role admin|agent|viewer
    python -m admin tokens list | tokens revoke ID
    python -m admin keys generate | keys rotate
    python -m admin shoppers forget --channel telegram --user 123456 | --conversation CID
    python -m admin export CID
    python -m admin audit [--limit N]

They call the same code as the HTTP API (``/admin/api``) and write the same
audit log, as ``cli:<user>@<host>``. A secret given as ``-`` is read from the
terminal without echo (or from stdin), so it stays out of the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
from typing import Any

from admin import crypto, privacy
from admin.access import ROLES, AccessError, AuditLog, TokenStore
from admin.credentials import SPECS, CredentialError, CredentialStore, learns_team
from channels import web as web_channel
from channels.checks import check_platform
from shopbot.db import engine_for
from shopbot.settings import get_settings
from shopbot.store import ConversationStore

SECRET_FIELDS = {"bot_token", "webhook_secret", "signing_secret"}


def _actor() -> str:
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _secret(value: str | None, what: str) -> str | None:
    if value != "-":
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    return sys.stdin.readline().strip()


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


class Context:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.engine = engine_for(self.settings.database_url)
        self._store: ConversationStore | None = None
        self.audit = AuditLog(self.engine)

    @property
    def store(self) -> ConversationStore:
        if self._store is None:
            s = self.settings
            self._store = ConversationStore.from_settings(s)
        return self._store

    def credentials(self) -> CredentialStore:
        return CredentialStore.from_settings(self.settings, self.engine, self.store.r)

    def record(self, action: str, target: str | None, outcome: str = "ok", **detail: Any) -> None:
        self.audit.record(_actor(), "admin", action, target, outcome, "cli", detail or None)


def channels(ctx: Context, args: argparse.Namespace) -> int:
    creds = ctx.credentials()
    if args.verb == "list":
        _print(creds.listing())
        return 0
    target = f"{args.platform}/{args.name}"
    if args.verb == "set":
        values: dict[str, Any] = {}
        for f in ("bot_token", "webhook_secret", "signing_secret", "agent_channel", "api_base_url", "team_id"):
            v = getattr(args, f)
            if v is not None:
                values[f] = _secret(v, f.replace("_", " ")) if f in SECRET_FIELDS else v
        if args.allowed_origin:
            values["allowed_origins"] = args.allowed_origin
        if args.desk_agent:
            values["desk_agents"] = args.desk_agent
        try:
            entry = creds.set(args.platform, args.name, values, _actor())
        except CredentialError as exc:
            ctx.record("channel.set", target, f"refused {exc.status}", fields=sorted(values))
            print(f"error: {exc.reason}", file=sys.stderr)
            return 2
        ctx.record("channel.set", target, fields=sorted(values))
        if learns_team(args.platform, values, entry):
            checked = creds.check(
                args.platform, args.name, _actor(), check_platform, relearn=bool(values.get("bot_token"))
            )
            entry["checked"] = checked
            if checked and checked.get("team_id"):
                entry["team_id"] = checked["team_id"]
                ctx.record("channel.set", target, fields=["team_id"], team_id=checked["team_id"])
        _print(entry)
        for f, v in entry["generated"].items():
            print(f"generated {f} (shown once; give it to the platform): {v}", file=sys.stderr)
        return 0
    if args.verb == "remove":
        gone = creds.remove(args.platform, args.name)
        ctx.record("channel.remove", target, "ok" if gone else "refused 404")
        if not gone:
            print(f"error: no {args.platform} entry named {args.name!r}", file=sys.stderr)
            return 1
        print(f"removed {target}")
        return 0
    result = creds.check(args.platform, args.name, _actor(), check_platform)
    if result is None:
        print(f"error: no {args.platform} entry named {args.name!r}", file=sys.stderr)
        return 1
    extra = {"team_id": result["team_id"]} if result.get("team_id") else {}
    ctx.record("channel.test", target, ok=result["ok"], **extra)
    print(("ok: " if result["ok"] else "FAILED: ") + result["detail"])
    return 0 if result["ok"] else 1


def tokens(ctx: Context, args: argparse.Namespace) -> int:
    store = TokenStore(ctx.engine)
    try:
        if args.verb == "create":
            entry, token = store.create(args.name, args.role, _actor())
            ctx.record("token.create", entry["id"], name=entry["name"], role=entry["role"])
            _print(entry)
            print(f"token (shown once, keep it secret): {token}", file=sys.stderr)
            print(token)
        elif args.verb == "revoke":
            entry = store.revoke(args.id)
            ctx.record("token.revoke", args.id)
            _print(entry)
        else:
            _print(store.listing())
    except AccessError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    return 0


def keys(ctx: Context | None, args: argparse.Namespace) -> int:
    if args.verb == "generate":
        print(crypto.generate_key())
        return 0
    assert ctx is not None
    try:
        n = ctx.credentials().rotate()
    except (CredentialError, crypto.SecretKeyError) as exc:
        print(f"error: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    ctx.record("keys.rotate", None, entries=n)
    kid = crypto.SecretBox.from_settings(ctx.settings).current_id
    print(f"re-encrypted {n} entr{'y' if n == 1 else 'ies'} with key {kid}")
    return 0


def shoppers(ctx: Context, args: argparse.Namespace) -> int:
    try:
        if args.conversation:
            cids = list(args.conversation)
        elif args.channel and args.user:
            ids = web_channel.shopper_ids(args.channel, args.user)
            cids = privacy.conversations_of(ctx.store, ctx.engine, args.channel, *ids)
        else:
            print("error: give --conversation CID, or --channel and --user", file=sys.stderr)
            return 2
        counts = privacy.forget(ctx.store, ctx.engine, cids)
    except privacy.PrivacyError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 2
    ctx.record("shopper.forget", None, conversations=len(cids))
    _print({"conversation_ids": cids, **counts})
    return 0


def export(ctx: Context, args: argparse.Namespace) -> int:
    try:
        out = privacy.export(ctx.store, ctx.engine, args.conversation_id)
    except privacy.PrivacyError as exc:
        print(f"error: {exc.reason}", file=sys.stderr)
        return 1
    ctx.record("conversation.export", args.conversation_id)
    _print(out)
    return 0


def audit(ctx: Context, args: argparse.Namespace) -> int:
    _print(ctx.audit.entries(args.limit))
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m admin", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    ch = sub.add_parser("channels", help="channel credentials").add_subparsers(dest="verb", required=True)
    ch.add_parser("list", help="every entry, secrets as their last 4 characters")
    for verb in ("set", "test", "remove"):
        p = ch.add_parser(verb)
        p.add_argument("platform", choices=sorted(SPECS))
        p.add_argument("name", help="your name for this bot / workspace / site, e.g. shop")
    st = ch.choices["set"]
    st.add_argument("--bot-token", help="Telegram or Slack bot token ('-': ask)")
    st.add_argument("--webhook-secret", help="Telegram: the setWebhook secret_token ('-': ask; default: made up)")
    st.add_argument("--signing-secret", help="Slack: the app's signing secret ('-': ask)")
    st.add_argument("--agent-channel", help="Slack: channel id for the hand-off cards")
    st.add_argument("--api-base-url", help="the platform's API URL (a self-hosted Bot API server...)")
    st.add_argument("--allowed-origin", action="append", help="web: an origin allowed to embed the chat (repeat)")
    st.add_argument("--desk-agent", action="append", help="Slack: a user id who may work the queue (repeat)")
    st.add_argument(
        "--team-id", help="Slack: the desk's workspace, T0123ABCD (default: learned from auth.test; '' clears it)"
    )

    tk = sub.add_parser("tokens", help="API tokens").add_subparsers(dest="verb", required=True)
    cr = tk.add_parser("create")
    cr.add_argument("--name", required=True, help="who it is for")
    cr.add_argument("--role", required=True, choices=ROLES)
    tk.add_parser("list")
    tk.add_parser("revoke").add_argument("id")

    ky = sub.add_parser("keys", help="the key that encrypts stored credentials").add_subparsers(
        dest="verb", required=True
    )
    ky.add_parser("generate", help="print a new random key")
    ky.add_parser("rotate", help="re-encrypt every entry with SHOPBOT_SECRET_KEY (old keys in PREVIOUS_SECRET_KEYS)")

    sh = sub.add_parser("shoppers", help="shoppers' data").add_subparsers(dest="verb", required=True)
    fg = sh.add_parser("forget", help="delete everything about one shopper")
    fg.add_argument("--channel", choices=privacy.CHANNELS)
    fg.add_argument("--user", help="their Telegram / Slack user id, or the web session id")
    fg.add_argument("--conversation", action="append", help="a conversation id (repeat)")

    ex = sub.add_parser("export", help="a conversation's transcript, personal data masked (JSON)")
    ex.add_argument("conversation_id")
    au = sub.add_parser("audit", help="the audit log, newest first")
    au.add_argument("--limit", type=int, default=50)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "keys" and args.verb == "generate":
        return keys(None, args)
    ctx = Context()
    return {"channels": channels, "tokens": tokens, "keys": keys, "shoppers": shoppers, "export": export,
            "audit": audit}[args.command](ctx, args)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
