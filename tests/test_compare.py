"""recipes.compare: one table and one chart from the AMBER, POPE and speed reports."""

import json

import pytest

from recipes import compare


def test_labels_map_to_the_speed_row_of_the_same_intervention():
    assert compare.speed_row_name("skip2") == "skip2 static"
    assert compare.speed_row_name("skip2:online") == "skip2 online"
    assert compare.speed_row_name("dola") == "dola" and compare.speed_row_name("none") == "none"


def _write(path, key, rows):
    path.write_text(json.dumps({"meta": {}, "rows": [{key: name, **values} for name, values in rows.items()]}))
    return path


def test_table_and_chart_from_reports(tmp_path, capsys):
    amber = _write(tmp_path / "amber_a.json", "variant", {
        "none": {"CHAIR": 20.0, "Cover": 60.0, "Hal": 30.0, "Cog": 2.0, "Accuracy": 55.0, "F1": 70.0},
        "exit": {"CHAIR": 18.0, "Cover": 58.0, "Hal": 25.0, "Cog": 2.0, "Accuracy": 55.0, "F1": 70.0},
        "vcd": {"CHAIR": 15.0, "Cover": 61.0, "Hal": 20.0, "Cog": 1.0, "Accuracy": 60.0, "F1": 72.0}})
    split = lambda f1: {f"{s}_{k}": v for s in ("random", "popular", "adversarial") for k, v in (("F1", f1), ("yes_ratio", 50.0))}
    pope = _write(tmp_path / "pope_all.json", "variant", {"none": {**split(80.0), "avg_Accuracy": 81.0},
                                                          "exit": split(79.0), "vcd": {**split(83.0), "avg_Accuracy": 84.0}})
    speed = _write(tmp_path / "speed.json", "config", {"stock": {"speedup": 1.0}, "none": {"speedup": 1.0, "spread_pct": 2.0},
                                                       "exit static": {"speedup": 1.2, "spread_pct": 3.0, "layers_skipped": 6.0},
                                                       "vcd": {"speedup": 0.5, "spread_pct": 4.0, "layers_skipped": 0.0}})
    assert compare.main(["--amber", str(amber), "--pope", str(pope), "--speed", str(speed), "--out", str(tmp_path / "out")]) == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "out" / "comparison.json").read_text())["rows"]}
    assert set(rows) == {"none", "exit (extension)", "vcd"}
    assert rows["exit (extension)"]["speed vs stock"] == 1.2 and rows["vcd"]["POPE F1 adversarial"] == 83.0
    assert rows["none"]["POPE yes % (avg)"] == 50.0 and rows["exit (extension)"]["POPE acc (avg)"] is None
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0 and "| variant" in capsys.readouterr().out


def test_missing_report_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        compare.main(["--amber", str(tmp_path / "none.json"), "--pope", "x", "--speed", "y", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "cannot read the report" in capsys.readouterr().err
