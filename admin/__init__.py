"""The admin and security side: channel credentials (``credentials``, sealed with the key ring in ``crypto``;
Slack workspaces from "Add to Slack" in ``slack_installs``), tokens, roles and the audit log (``access``),
a shopper's data export and forgetting (``privacy``), and the admin CLI (``python -m admin``, ``cli``).

It builds on the core (``shopbot``: settings, database, store, transcripts) and calls the channels' own
credentials checks (``channels.checks``); the gateway and the workers use it (``tests/test_layers.py``).
"""
