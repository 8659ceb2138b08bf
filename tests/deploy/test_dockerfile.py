"""Static checks of the Dockerfile (no docker engine needed)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

import pytest

from deploy import dashboard_queries as dq

DOCKERFILE = dq.REPO_ROOT / "Dockerfile"
DOCKERIGNORE = dq.REPO_ROOT / ".dockerignore"
COMPILERS = ("gcc", "g++", "clang", "build-essential", "make", "cc ")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with line continuations joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    result = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def _stages() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages()[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_multi_stage_on_python_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base), (
            stage.base
        )
    assert stages[0].name, "the build stage is named"


def test_build_stage_builds_a_wheel_into_a_venv(stages: list[Stage]) -> None:
    runs = " ".join(stages[0].all("RUN"))
    assert "pip wheel" in runs
    assert "python -m venv /opt/depwatch" in runs


def test_final_stage_copies_only_the_venv(stages: list[Stage], final: Stage) -> None:
    copies = final.all("COPY")
    assert copies == [f"--from={stages[0].name} /opt/depwatch /opt/depwatch"]
    assert not final.all("ADD")
    runs = " ".join(final.all("RUN")).lower()
    assert not any(compiler in runs for compiler in COMPILERS), runs
    assert "apt-get install" not in runs


def test_final_stage_runs_as_numeric_non_root(final: Stage) -> None:
    users = final.all("USER")
    assert users, "USER is set in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == 65532
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_and_port(final: Stage) -> None:
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["depwatch"]
    assert entrypoint == '["depwatch"]'
    assert final.all("EXPOSE") == ["9478"]
    assert not final.all("CMD"), "depwatch with no argument serves"


def test_works_with_a_read_only_root_filesystem(final: Stage) -> None:
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "/opt/depwatch/bin" in env  # PATH reaches the console script


def test_copied_sources_exist_and_are_not_ignored(stages: list[Stage]) -> None:
    ignore = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "allow-list style: ignore everything, then allow"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in stages:
        for copy in stage.all("COPY"):
            words = shlex.split(copy)
            if any(w.startswith("--from") for w in words):
                continue
            for source in words[:-1]:
                assert (dq.REPO_ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} excluded by .dockerignore"
