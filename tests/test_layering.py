"""The one-way arrows of docs/architecture.md, checked on the source: storage and
workflows know no caller; telegram_ui (what a user reads or taps) serves the bot, the
activities and the Mini App, so it imports none of them; the activities never import the
bot; the plan service serves the bot and the Mini App, which never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "workflows": {"activities", "bot", "storage", "telegram_ui", "webapp", "ops", "services"},
    "storage": {"activities", "bot", "telegram_ui", "webapp", "workflows", "services"},
    "telegram_ui": {"activities", "bot", "webapp", "services"},
    "activities": {"bot", "webapp", "services"},
    "services": {"activities", "bot", "webapp", "telegram_ui"},
    "webapp": {"bot", "activities"},
    "bot": {"webapp", "activities"},
}


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_packages_import_only_downstream() -> None:
    wrong = []
    for package, banned in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            for name in sorted(_imported_packages(path) & banned):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []
