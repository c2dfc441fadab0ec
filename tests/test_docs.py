"""The documentation site (mkdocs.yml, docs/) builds cleanly, and the README stays a short front page."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _build(project: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner, not a build warning
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _warnings(result: subprocess.CompletedProcess) -> list[str]:
    output = result.stdout + result.stderr
    return [line for line in output.splitlines() if line.lstrip().startswith("WARNING")]


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_mkdocs_build_is_strict_and_clean(tmp_path):
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _warnings(result) == []
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == pages
    assert "architecture.md" in nav and "metrics.md" in nav


def test_broken_links_and_pages_outside_the_nav_fail_the_build(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", project / "docs")
    index = project / "docs" / "index.md"
    broken = "[a](web.md#no-such-anchor) [b](no-such-page.md) [c](../gateway/app.py)"
    index.write_text(index.read_text(encoding="utf-8") + "\n" + broken + "\n", encoding="utf-8")
    (project / "docs" / "orphan.md").write_text("# Not in the nav\n", encoding="utf-8")
    result = _build(project, tmp_path / "site")
    assert result.returncode != 0
    assert len(_warnings(result)) == 4
    output = result.stdout + result.stderr
    for expected in ("orphan.md", "#no-such-anchor", "no-such-page.md", "../gateway/app.py"):
        assert expected in output, output


def test_readme_is_a_short_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150
    assert lines[0] == "# shopbot"
    head = "\n".join(lines[:10])
    assert "./scripts/start.sh" in head
    assert "./scripts/test.sh" in head
    assert "docs/index.md" in "\n".join(lines)


def test_the_hand_off_card_picture_is_drawn_from_the_desks_own_blocks_with_shopper_text_as_text():
    sys.path.insert(0, str(ROOT / "scripts"))
    import render_handoff_card as card

    drawn = "".join(card.block_html(b) for b in card.example())
    assert "Claim" in drawn and "1 of 3 in the queue" in drawn and "contact_human_agent" in drawn
    assert card.mrkdwn("*Shopper*: &lt;b&gt;hi&lt;/b&gt; <@U0AGENT1>") == (
        '<b>Shopper</b>: &lt;b&gt;hi&lt;/b&gt; <span class="mention">@U0AGENT1</span>'
    )
    assert (ROOT / "docs" / "img" / "handoff-card.png").is_file()
