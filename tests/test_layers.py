"""Dependencies point one way (docs/architecture.md, "Packages"): gateway and workers -> channels, dialogue,
handoff, admin -> shopbot (the core); nlu imports nothing of the product. The few known exceptions are listed
here by file, so that a new one is a decision, not an accident."""

from __future__ import annotations

import ast
from collections import defaultdict

from .conftest import ROOT

PACKAGES = ("nlu", "shopbot", "admin", "channels", "dialogue", "handoff", "workers", "gateway")
ALLOWED = {
    "nlu": set(),
    "shopbot": set(),
    "admin": {"shopbot", "channels"},  # the admin side calls the channels' own credentials checks
    "channels": {"shopbot"},
    "dialogue": {"shopbot", "nlu"},
    "handoff": {"shopbot", "dialogue", "channels"},
    "workers": {"shopbot", "admin", "dialogue", "handoff", "channels", "nlu"},
    "gateway": {"shopbot", "admin", "dialogue", "handoff", "channels", "workers"},
}
# The core starts the product and migrates the shop's tables, which the dialogue package defines.
EXCEPTIONS = {
    ("shopbot/start.py", "dialogue"),  # the demo shop data
    ("shopbot/start.py", "nlu"),  # whether the models are there (nlu.versions)
    ("shopbot/migrations/env.py", "dialogue"),  # the shop tables' metadata
    ("shopbot/migrations/env.py", "admin"),  # the admin tables' metadata (credentials, tokens, installs)
    ("shopbot/start.py", "admin"),  # the first credentials key (admin.crypto)
    ("channels/telegram.py", "admin"),  # its set-webhook CLI reads a stored bot (--bot NAME)
}
# The gateway sends tasks by name and never loads the workers' tasks (nor torch with them).
GATEWAY_MAY_IMPORT_FROM_WORKERS = {"workers.app"}


def imports() -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if (top := name.split(".")[0]) in PACKAGES and top != pkg:
                        found[(str(path.relative_to(ROOT)), top)].add(name)
    return found


def test_dependencies_point_one_way():
    found = imports()
    wrong = {
        (f, top): sorted(names)
        for (f, top), names in found.items()
        if top not in ALLOWED[f.split("/")[0]] and (f, top) not in EXCEPTIONS
    }
    assert not wrong, f"imports against the layering: {wrong}"
    from_workers = {
        name for (f, top), names in found.items() if f.startswith("gateway/") and top == "workers" for name in names
    }
    assert from_workers <= GATEWAY_MAY_IMPORT_FROM_WORKERS, from_workers
    # The exceptions are still needed (else they go from the list).
    assert all(key in found for key in EXCEPTIONS), [k for k in EXCEPTIONS if k not in found]


def test_the_admin_clis_old_module_path_still_works_for_a_release():
    import subprocess
    import sys

    old = subprocess.run([sys.executable, "-m", "gateway.admin", "--help"], cwd=ROOT, capture_output=True, text=True)
    new = subprocess.run([sys.executable, "-m", "admin", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert old.returncode == new.returncode == 0 and old.stdout == new.stdout
    assert "python -m admin" in old.stderr and not new.stderr
