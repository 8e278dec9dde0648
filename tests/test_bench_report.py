"""Benchmark page writer: marker handling, table rendering and the merged results file."""

from __future__ import annotations

import json

import pytest

from bench.report import (
    BEGIN_MARKER,
    END_MARKER,
    RESULTS_FILE,
    RunInfo,
    SectionResult,
    Table,
    format_cell,
    load_results,
    render_table,
    replace_block,
    write_outputs,
)
from flowjepa.errors import InvalidInputError

HAND_WRITTEN_TOP = "# Benchmarks\r\n\r\nWritten by hand, with CRLF line ends and trailing spaces.  \r\n\r\n"
HAND_WRITTEN_BOTTOM = "\n\n## Environments\n\nAlso by hand.\n"


def section(key: str, value: float, status: str = "ok") -> SectionResult:
    return SectionResult(
        key=key,
        title=f"Section {key}",
        status=status,
        tables=[Table(caption="numbers", columns=["name", "value", "ratio"], rows=[["a", value, value / 2]])],
        data={"value": value},
        run=RunInfo(
            command="python -m bench all --tiny",
            commit="abc1234",
            hardware="test CPU",
            budget="tiny",
            started="2025-01-01T00:00:00+00:00",
            wall_s=1.5,
        ),
    )


def test_block_replaced_between_markers_only():
    page = f"{HAND_WRITTEN_TOP}{BEGIN_MARKER}\nold generated text\n{END_MARKER}{HAND_WRITTEN_BOTTOM}"

    updated = replace_block(page, "NEW BLOCK")

    assert updated.startswith(HAND_WRITTEN_TOP + BEGIN_MARKER)
    assert updated.endswith(END_MARKER + HAND_WRITTEN_BOTTOM)
    assert "old generated text" not in updated
    assert "NEW BLOCK" in updated
    assert replace_block(updated, "NEW BLOCK") == updated


def test_markers_appended_when_absent():
    page = "# Benchmarks\n\nHand-written, no final newline"

    updated = replace_block(page, "BLOCK")

    assert updated.startswith(page)
    assert updated.endswith(f"{BEGIN_MARKER}\nBLOCK\n{END_MARKER}\n")
    assert replace_block("", "BLOCK") == f"{BEGIN_MARKER}\nBLOCK\n{END_MARKER}\n"


@pytest.mark.parametrize(
    "page",
    [
        f"{BEGIN_MARKER}\nno end marker\n",
        f"{END_MARKER}\nbefore the begin marker\n{BEGIN_MARKER}\n",
        f"{BEGIN_MARKER}\n{END_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n",
    ],
)
def test_broken_markers_rejected(page):
    with pytest.raises(InvalidInputError, match="marker"):
        replace_block(page, "BLOCK")


def test_table_rendering():
    table = Table(caption="caption", columns=["a", "b"], rows=[[1.23456789, None], ["x|y", 3e-7]])

    lines = render_table(table).splitlines()

    assert lines[0] == "caption"
    assert lines[2] == "| a | b |"
    assert lines[3] == "|---|---|"
    assert lines[4] == "| 1.235 | n/a |"
    assert lines[5] == "| x\\|y | 3.000e-07 |"


def test_table_row_length_checked():
    with pytest.raises(ValueError, match="columns"):
        render_table(Table(caption="", columns=["a", "b"], rows=[[1]]))


def test_cell_formats():
    assert format_cell(True) == "yes"
    assert format_cell(12) == "12"
    assert format_cell(0.0) == "0"
    assert format_cell(123456.0) == "1.235e+05"
    assert format_cell(float("nan")) == "nan"


def test_outputs_merge_earlier_sections(tmp_path):
    out, page = tmp_path / "docs" / "bench", tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir(parents=True)
    page.write_bytes((HAND_WRITTEN_TOP + HAND_WRITTEN_BOTTOM).encode())

    write_outputs([section("density", 2.0), section("speed", float("inf"))], out, page)
    write_outputs([section("density", 4.0)], out, page)

    stored = json.loads((out / RESULTS_FILE).read_text())
    assert set(stored["sections"]) == {"density", "speed"}
    assert stored["sections"]["density"]["data"]["value"] == 4.0
    assert stored["sections"]["speed"]["data"]["value"] is None  # inf is not valid JSON
    text = page.read_bytes().decode()
    assert text.startswith(HAND_WRITTEN_TOP + HAND_WRITTEN_BOTTOM)
    assert text.count(BEGIN_MARKER) == 1
    assert "| a | 4 | 2 |" in text
    assert "Section speed" in text
    assert "Commit: `abc1234`" in text


def test_results_round_trip(tmp_path):
    original = section("exactness", 0.5, status="failed")

    write_outputs([original], tmp_path, None)
    loaded = load_results(tmp_path / RESULTS_FILE)["exactness"]

    assert loaded == original


def test_unreadable_results_ignored(tmp_path):
    (tmp_path / RESULTS_FILE).write_text("{not json")

    assert load_results(tmp_path / RESULTS_FILE) == {}
