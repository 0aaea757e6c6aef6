"""Every `omrl-*` command line in the README and docs/ names a command and options that exist.

Each page's shell blocks are scanned; for every line that calls omrl-data / omrl-train /
omrl-eval / omrl-study, the subcommand's ``--help`` must succeed and every ``--option`` on the
line must appear in that help. Running the commands themselves would collect and train for
hours; this catches the docs drifting from the CLI (a renamed command or flag).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.data import app as data_app
from cli.study import app as study_app
from cli.train import app as train_app
from cli.train import eval_app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
APPS = {"omrl-data": data_app, "omrl-train": train_app, "omrl-study": study_app}
runner = CliRunner()


def _command_lines() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.search(r"(omrl-(?:data|train|eval|study))\s", line + " ")
                if m:
                    out.append((page.name, line[m.start():]))
    return out


LINES = _command_lines()


_HELP: dict[tuple[str, str], tuple[int, str]] = {}


def _help(tool: str, words: list[str]) -> tuple[int, str]:
    key = (tool, words[0] if words and not words[0].startswith("-") else "")
    if key not in _HELP:
        _HELP[key] = _run_help(tool, words)
    return _HELP[key]


def _run_help(tool: str, words: list[str]) -> tuple[int, str]:
    if tool == "omrl-eval":
        res = runner.invoke(eval_app, ["--help"], env={"COLUMNS": "300"})
        return res.exit_code, res.output
    sub = [w for w in words[:1] if not w.startswith("-")]
    res = runner.invoke(APPS[tool], [*sub, "--help"], env={"COLUMNS": "300"})
    return res.exit_code, res.output


def test_the_pages_hold_commands():
    assert len(LINES) > 20


@pytest.mark.parametrize("page,line", LINES, ids=[f"{p}:{l[:60]}" for p, l in LINES])
def test_documented_command_exists(page, line):
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)]
    tool, rest = words[0], words[1:]
    code, text = _help(tool, rest)
    assert code == 0, f"{page}: `{line}`: {tool} {' '.join(rest[:1])} --help failed:\n{text}"
    for option in (w.split("=", 1)[0] for w in rest if w.startswith("--")):
        assert option in text, f"{page}: `{line}`: option {option} is not in `{tool} {rest[0] if rest else ''} --help`"
