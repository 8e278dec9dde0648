"""`python -m bench all --tiny` end to end: every section runs on tiny inputs and the page comes out valid.

One tiny run (about 20 s on 2 busy CPU cores) is shared by most tests. Later runs reuse its trained
models from the same work folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Importing the benchmark first imports torch._dynamo, before any test renders with MuJoCo (see bench.training).
from bench.__main__ import main
from bench.budget import TINY
from bench.context import BenchContext, make_options
from bench.planning_suite import PLANNERS, _models
from bench.report import BEGIN_MARKER, END_MARKER, RESULTS_FILE
from cli.main import app

runner = CliRunner()

HAND_WRITTEN = "# Benchmarks\n\nHand-written introduction that the run must keep.\n\n"
HAND_WRITTEN_AFTER = "\n\n## Environments\n\nAnother engineer's section.\n"
SECTIONS = ("models", "exactness", "density", "representation", "ablations", "planning", "speed")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run every section with the tiny budget into a page that has hand-written text around the markers."""
    root = tmp_path_factory.mktemp("bench")
    page = root / "benchmarks.md"
    page.write_text(f"{HAND_WRITTEN}{BEGIN_MARKER}\nstale\n{END_MARKER}{HAND_WRITTEN_AFTER}")
    arguments = ["all", "--tiny", "--out", str(root / "out"), "--page", str(page), "--work", str(root / "work")]

    status = main(arguments)

    results = json.loads((root / "out" / RESULTS_FILE).read_text())["sections"]
    return {"status": status, "root": root, "page": page, "results": results, "arguments": arguments}


def rows_of(section: dict, table: int = 0) -> list[dict]:
    columns = section["tables"][table]["columns"]
    return [dict(zip(columns, row)) for row in section["tables"][table]["rows"]]


def test_run_succeeds_with_every_section(tiny_run):
    assert tiny_run["status"] == 0
    assert set(tiny_run["results"]) == set(SECTIONS)
    for key, section in tiny_run["results"].items():
        assert section["status"] == "ok", (key, section["reason"])
        assert section["run"]["wall_s"] > 0, key
        assert section["run"]["command"].startswith("python -m bench all --tiny"), key
        assert section["run"]["commit"], key


def test_page_keeps_hand_written_text(tiny_run):
    text = tiny_run["page"].read_text()

    assert text.startswith(HAND_WRITTEN + BEGIN_MARKER)
    assert text.endswith(END_MARKER + HAND_WRITTEN_AFTER)
    assert "stale" not in text
    for section in tiny_run["results"].values():
        assert f". {section['title']}" in text


def test_page_plots_exist(tiny_run):
    text = tiny_run["page"].read_text()
    plots = [plot for section in tiny_run["results"].values() for plot in section["plots"]]

    assert len(plots) >= 6
    for plot in plots:
        path = tiny_run["root"] / "out" / plot
        assert path.read_bytes().startswith(PNG_SIGNATURE), plot
        assert f"](out/{plot})" in text, plot


def test_models_trained_for_equal_budget(tiny_run):
    models = rows_of(tiny_run["results"]["models"])

    assert len(models) == 12  # 3 per dataset (Flow-JEPA and two baselines) + 6 ablations
    assert {row["steps"] for row in models} == {TINY.max_steps}
    assert all(row["origin"] == "trained now" for row in models)


def test_round_trip_exact(tiny_run):
    rows = rows_of(tiny_run["results"]["exactness"])

    assert {(row["data"].split()[0], row["dtype"]) for row in rows} >= {
        ("held-out", "float32"),
        ("held-out", "float64"),
    }
    for row in rows:
        assert row["uint8-exact fraction"] == 1.0
        assert row["max error"] < 1 / 512
    float32 = [row["median error"] for row in rows if row["dtype"] == "float32"]
    float64 = [row["median error"] for row in rows if row["dtype"] == "float64"]
    assert max(float64) < min(float32)


def test_density_ratios_consistent(tiny_run):
    for table in range(2):
        rows = {row["method"]: row for row in rows_of(tiny_run["results"]["density"], table)}
        png = rows["PNG"]["bits/dim"]
        assert 0 < png < 12
        for row in rows.values():
            assert row["bits/dim"] > 0
            assert row["/ PNG"] == pytest.approx(row["bits/dim"] / png)
        assert {"WebP (lossless)", "Flow-JEPA, frozen masks", "fixed-mask flow"} <= set(rows)


def test_representation_covers_every_encoder(tiny_run):
    section = tiny_run["results"]["representation"]
    encoders = {"raw pixels", "Flow-JEPA", "Flow-JEPA, untrained", "conv encoder (LeJEPA-style)"}

    image_rows = rows_of(section, 0)
    assert {row["encoder"] for row in image_rows} == encoders
    assert all(0.0 <= row["top-1"] <= 1.0 for row in image_rows)
    state_rows = rows_of(section, 1)
    assert {row["encoder"] for row in state_rows} == encoders
    assert all(row["mean R^2"] <= 1.0 for row in state_rows)


def test_ablations_compare_every_variant(tiny_run):
    rows = rows_of(tiny_run["results"]["ablations"])

    assert [row["variant"] for row in rows][0] == "Flow-JEPA"
    assert len(rows) == 7
    assert rows[0]["/ default"] == 1.0
    assert all(row["bits/dim"] > 0 for row in rows)


def test_planning_runs_every_planner(tiny_run):
    section = tiny_run["results"]["planning"]
    rows = section["data"]["rows"]

    assert [row["planner"] for row in rows] == list(PLANNERS)
    assert all(row["tasks"] == TINY.planning_tasks for row in rows)
    assert all(row["seconds_per_action"] > 0 for row in rows)
    assert any("untrained" in note for note in section["notes"])


def test_speed_measures_peak_and_throughput(tiny_run):
    data = tiny_run["results"]["speed"]["data"]

    assert data["matmul_peak_gflop_per_s"] > 0
    assert data["conv_reference_gflop_per_s"] > 0
    assert data["training"]["Flow-JEPA"]["images_per_s"] > 0
    assert data["training"]["Flow-JEPA"]["gflop_per_step"] > data["training"]["fixed-mask flow"]["gflop_per_step"]
    assert data["couplings"]["Flow-JEPA"]["gflop"] > 0


def test_second_run_reuses_models_and_keeps_sections(tiny_run):
    root = tiny_run["root"]
    arguments = ["exactness", "--tiny", "--out", str(root / "out"), "--page", str(tiny_run["page"])]

    status = main([*arguments, "--work", str(root / "work")])

    assert status == 0
    results = json.loads((root / "out" / RESULTS_FILE).read_text())["sections"]
    assert set(results) == set(SECTIONS)
    assert results["exactness"]["run"]["command"].startswith("python -m bench exactness")
    assert {row["origin"] for row in rows_of(results["models"])} == {"reused"}


def test_cli_runs_a_section(tiny_run):
    root = tiny_run["root"]
    out = root / "cli-out"

    result = runner.invoke(
        app, ["bench", "density", "--tiny", "--out", str(out), "--no-page", "--work", str(root / "work")]
    )

    assert result.exit_code == 0, result.output
    results = json.loads((out / RESULTS_FILE).read_text())["sections"]
    assert set(results) == {"models", "density"}
    assert results["density"]["run"]["command"] == (
        f"flowjepa bench density --tiny --out {out} --no-page --work {root / 'work'}"
    )


def test_given_models_join_comparison(tiny_run):
    root = tiny_run["root"]
    work = root / "work"
    out = root / "given-out"
    arguments = ["exactness", "density", "representation", "planning", "--tiny", "--out", str(out), "--no-page"]
    arguments += ["--work", str(work), "--imagenette-model", str(work / "models" / "images-flowjepa" / "run")]
    arguments += ["--cartpole-model", str(work / "planning-quick" / "encoder")]
    arguments += ["--world-model", str(work / "planning-quick" / "world_model")]

    status = main(arguments)

    assert status == 0
    results = json.loads((out / RESULTS_FILE).read_text())["sections"]
    given = {row["model"] for row in rows_of(results["exactness"]) if row["model"].startswith("Flow-JEPA (given")}
    assert len(given) == 2
    for table in range(2):
        methods = [row["method"] for row in rows_of(results["density"], table)]
        assert any(method.startswith("Flow-JEPA (given") for method in methods)
    encoders = {row["encoder"] for row in rows_of(results["representation"], 1)}
    assert any(encoder.startswith("Flow-JEPA (given") for encoder in encoders)
    assert "world_model" in results["planning"]["data"]["origin"]
    assert not any("untrained" in note for note in results["planning"]["notes"])


def test_ablations_on_cartpole(tiny_run):
    root = tiny_run["root"]
    out = root / "cartpole-ablations"
    arguments = ["ablations", "--tiny", "--ablation-data", "cartpole", "--out", str(out), "--no-page"]

    status = main([*arguments, "--work", str(root / "work")])

    assert status == 0
    section = json.loads((out / RESULTS_FILE).read_text())["sections"]["ablations"]
    rows = rows_of(section)
    assert len(rows) == 7
    assert "code probe mean R^2" in section["tables"][0]["columns"]
    assert all(row["code probe mean R^2"] <= 1.0 for row in rows)


def test_fallback_without_imagenette(tmp_path):
    arguments = ["exactness", "--tiny", "--no-imagenette", "--out", str(tmp_path / "out"), "--no-page"]

    status = main([*arguments, "--work", str(tmp_path / "work")])

    assert status == 0
    section = json.loads((tmp_path / "out" / RESULTS_FILE).read_text())["sections"]["exactness"]
    assert any("cart-position classes" in row["data"] for row in rows_of(section))
    classes = sorted(path.name for path in (tmp_path / "work" / "data").glob("classes-*/train/*"))
    assert classes == ["centre", "left", "right"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["bench", "nonsense", "--tiny"], "unknown benchmark section"),
        (["bench", "all", "--tiny", "--imagenette", "/nonexistent/imagenette"], "train/ and val/"),
        (["bench", "all", "--tiny", "--minutes-per-variant", "0"], "minutes per variant"),
        (["bench", "all", "--quick", "--tiny"], "--quick and --tiny"),
        (["bench", "all", "--tiny", "--budget", "[1]"], "JSON object"),
    ],
)
def test_cli_rejects_bad_input(arguments, message, tmp_path):
    result = runner.invoke(app, [*arguments, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_full_planning_without_models_is_skipped(tmp_path):
    empty = tmp_path / "no-world-model"
    empty.mkdir()
    options = make_options(
        ["planning"], preset="full", command="test", world_model=empty, cartpole_model=None, work=tmp_path / "work"
    )

    found = _models(BenchContext.create(options))

    assert isinstance(found, str)
    assert "no trained cartpole world model" in found
    assert not Path(tmp_path / "work").exists()
