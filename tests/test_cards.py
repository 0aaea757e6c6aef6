"""Dataset cards: front matter, sections, statistics that match the data, the plot, and a
regenerate command that really regenerates the dataset."""
from __future__ import annotations

import shlex

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import omrl_data
from cli.data import app
from omrl_data.cards import render_card, size_category, task_tier_statistics, write_card
from omrl_data.schema import FIELD_NAMES
from omrl_data.slicing import SliceSpec, slice_dataset
from omrl_data.store import catalog, manifest
from tests.synthetic import make_synthetic_dataset

runner = CliRunner()

SECTIONS = ("## Summary", "## Load it", "## Regenerate", "## Tasks", "## Splits", "## Per-task statistics", "## Schema",
            "## Provenance", "## Checksums", "## Citation", "## Changelog")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def dataset(omrl_home):
    return make_synthetic_dataset(omrl_home, n_tasks=3, n_rows=240, checkpoint_rows=20)


def _front_matter(text):
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def test_card_front_matter_and_sections(dataset):
    text = render_card(dataset)
    fm, body = _front_matter(text)
    assert fm["license"] == "cc-by-4.0" and fm["task_categories"] == ["reinforcement-learning"]
    assert "point_robot_sparse" in fm["tags"] and "offline-reinforcement-learning" in fm["tags"]
    assert fm["size_categories"] == ["n<1K"] and "synthetic" in fm["pretty_name"]
    positions = [body.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    for f in FIELD_NAMES:
        assert f"`{f}`" in body
    assert manifest.manifest_checksum(catalog.resolve(dataset)) in body
    assert f'omrl_data.load("{dataset}")' in body and "minari.load_dataset(" in body
    assert "@inproceedings" in body  # a citation
    assert size_category(150_000) == "100K<n<1M"


def test_card_statistics_match_the_data(dataset):
    d = omrl_data.load(dataset)
    folder = catalog.resolve(dataset)
    for i in range(d.n_tasks):
        s = task_tier_statistics(folder, i)
        ref = catalog.task_statistics(folder, i)
        assert s["all"]["transitions"] == ref["transitions"] and s["all"]["episodes"] == ref["episodes"]
        assert np.isclose(s["all"]["return_mean"], ref["return_mean"])
        assert sum(s[t]["transitions"] for t in ("random", "medium", "expert")) == ref["transitions"]
        assert sum(s[t]["episodes"] for t in ("random", "medium", "expert")) == ref["episodes"]
        # the expert tier is what `slice --quality expert` keeps
    exp = omrl_data.load(slice_dataset(dataset, "exp", SliceSpec(quality="expert")))
    assert exp.task_sizes.tolist() == [task_tier_statistics(folder, i)["expert"]["transitions"] for i in range(d.n_tasks)]
    text = render_card(dataset)
    row = task_tier_statistics(folder, 0)["expert"]
    assert f"| 0 | train | expert | {row['episodes']} | {row['transitions']} | {row['return_mean']:.2f} |" in text


def test_write_card_and_plot(dataset, tmp_path):
    md, png = write_card(dataset)
    assert md == catalog.resolve(dataset) / "card.md" and png.parent == md.parent
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"]({png.name})" in md.read_text()
    assert manifest.verify(md.parent) == []  # the card is not part of the manifest
    r = run("card", dataset, "--out", tmp_path / "cards" / "point.md", "--license", "mit")
    assert r.exit_code == 0, r.output
    out = tmp_path / "cards" / "point.md"
    fm, _ = _front_matter(out.read_text())
    assert fm["license"] == "mit" and (tmp_path / "cards" / "point_learning_progress.png").is_file()
    r = run("card", dataset, "--out", tmp_path / "card.txt")
    assert r.exit_code == 2 and ".md" in r.output
    r = run("card", "omrl/point_robot_sparse/none")
    assert r.exit_code == 2 and "no dataset" in r.output


def test_regenerate_command_of_a_slice_reproduces_it(dataset):
    sid = slice_dataset(dataset, "mid", SliceSpec(tasks=(2, 0), quality="medium", resplit="explicit", resplit_args={"test_tasks": [1]}))
    text = render_card(sid)
    block = text[text.index("## Regenerate") :].split("```")[1]
    slice_line = next(line for line in block.splitlines() if line.startswith("omrl-data slice"))
    args = shlex.split(slice_line)[1:]
    r = run(*args)
    assert r.exit_code == 0, r.output
    a, b = omrl_data.load(sid), omrl_data.load("omrl/point_robot_sparse/mid-v2")
    assert a.tasks.to_dict() == b.tasks.to_dict()
    for f in FIELD_NAMES:
        assert np.array_equal(a.fields[f], b.fields[f]), f
    assert "## Changelog" in text and f"slice of {dataset}" in text
