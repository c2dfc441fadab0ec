"""The channels' credentials checks, for the admin side (``admin.cli``, the admin API) to call: does the
platform accept these credentials? Each adapter offers its own (``check_credentials`` in
``channels.telegram``, ``channels.slack``, ``channels.web``); this module only names them by platform.

The credential store (``admin.credentials``) imports no adapter: the admin side passes
:func:`check_platform` to ``CredentialStore.check``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

ADAPTERS = {"telegram": "channels.telegram", "slack": "channels.slack", "web": "channels.web"}


def check_platform(platform: str, secret: dict[str, str], conf: dict[str, Any], settings) -> dict[str, Any]:
    """The platform's adapter's own check; a plain answer either way, never an exception."""
    module = ADAPTERS.get(platform)
    if module is None:
        return {"ok": False, "detail": f"no channel adapter for {platform!r}"}
    return import_module(module).check_credentials(secret, conf, settings)
