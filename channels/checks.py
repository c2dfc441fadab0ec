"""Each channel's own credentials check, for the admin side (``admin.cli``, the admin API) to call:
does the platform accept these credentials? A plain answer either way, never an exception.

Here, beside the adapters, so that the credential store (``admin.credentials``) imports no adapter: the
admin side passes :func:`check_platform` to ``CredentialStore.check``.
"""

from __future__ import annotations

from typing import Any


def check_platform(platform: str, secret: dict[str, str], conf: dict[str, Any], settings) -> dict[str, Any]:
    """Ask the platform whether these credentials work (``getMe``, ``auth.test``); a plain answer either way."""
    token = secret.get("bot_token", "")

    def plain(exc: Exception) -> str:
        text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        return text.replace(token, "[token]") if token else text

    if platform == "telegram":
        from channels.telegram import TelegramSender

        base = conf.get("api_base_url") or settings.telegram_api_base_url
        try:
            me = TelegramSender(token, base, timeout_s=5).call("getMe")
        except Exception as exc:  # noqa: BLE001 - reported to the admin, never raised
            if type(exc).__name__ == "InvalidToken":
                return {
                    "ok": False,
                    "detail": "Telegram rejected the bot token (401 Unauthorized): check it with @BotFather",
                }
            return {"ok": False, "detail": f"Telegram could not be asked ({plain(exc)})"}
        return {"ok": True, "detail": f"Telegram knows this bot: @{me.get('username')} (id {me.get('id')})"}
    if platform == "slack":
        from channels.slack import SlackSender

        base = conf.get("api_base_url") or settings.slack_api_base_url
        try:
            who = SlackSender(token, base, timeout_s=5).call("auth.test")
        except Exception as exc:  # noqa: BLE001
            return {"ok": False, "detail": f"Slack did not accept the bot token ({plain(exc)})"}
        desk = f"; hand-off cards go to {conf['agent_channel']}" if conf.get("agent_channel") else ""
        return {
            "ok": True,
            "detail": f"Slack workspace {who.get('team') or who.get('team_id')}, bot {who.get('user_id')}{desk}",
            "team_id": who.get("team_id"),
        }
    origins = conf.get("allowed_origins") or []
    return {"ok": bool(origins), "detail": "allowed origins: " + (", ".join(origins) or "none")}
