"""``himari backtest`` on data other than a run's own: another market's bars file scored whole
(``--split all``) or over a date range (``--from``/``--to``) with the run's saved preprocessing,
the bars scored reported, the feature-set check, gross beside net metrics, and ``--export``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.evaluation.policy import METRICS


@pytest.fixture(scope="module")
def other_market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A second synthetic market (other seeds, 2025, two symbols) as a gzipped CSV, prepared
    once into its own cache (what ``--data FILE`` does)."""
    from himari.data.pipeline import resolve_prepared
    from himari.data.synthetic import SynthConfig, synthesize

    folder = tmp_path_factory.mktemp("other")
    a = synthesize(SynthConfig(bars=4000, seed=31, start="2025-01-01", symbol="AAA"))
    b = synthesize(SynthConfig(bars=3200, seed=32, start="2025-01-03T12:00", symbol="BBB"))
    csv = folder / "other.csv.gz"
    pd.concat([a, b], ignore_index=True).to_csv(csv, index=False)
    cache = folder / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIMARI_CACHE_DIR", str(cache))
        prepared = resolve_prepared(str(csv))
    return {"csv": csv, "cache": cache, "prepared": prepared}


def invoke(market: dict[str, Path], *args: str, columns: int = 80):
    return CliRunner().invoke(app, ["backtest", *args], env={"COLUMNS": str(columns),
                                                           "HIMARI_CACHE_DIR": str(market["cache"])})


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def _buy_and_hold_gross(data, ranges) -> float:
    """Bought at the open after the first bar's close, held to the last close; ranges chained."""
    return float(np.prod([data.close[b - 1] / data.open[a + 1] for a, b in ranges]) - 1.0)


def _zscore(features: np.ndarray, rows: np.ndarray, fit_on: np.ndarray | None = None,
            clip: float = 10.0) -> np.ndarray:
    """Population mean and std of ``rows`` of ``fit_on`` (default ``features``; a zero std as
    1), applied to every row of ``features``, clipped."""
    x = np.asarray(features, dtype=np.float64)
    fit = x if fit_on is None else np.asarray(fit_on, dtype=np.float64)
    mean = fit[rows].mean(axis=0)
    std = fit[rows].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return np.clip((x - mean) / std, -clip, clip)


def _record_features(monkeypatch) -> dict[str, np.ndarray]:
    from himari.training.assemble import TrainedPolicy

    seen: dict[str, np.ndarray] = {}
    original = TrainedPolicy.features

    def features(self, data):
        out = original(self, data)
        seen[str(Path(data.path).resolve())] = np.array(out)
        return out

    monkeypatch.setattr(TrainedPolicy, "features", features)
    return seen


def test_a_run_scores_every_usable_bar_of_another_market_with_its_saved_preprocessing(
        other_market, trained_run, small_prepared, tmp_path, monkeypatch) -> None:
    from himari.data import PreparedData
    from himari.data.splits import rows_of

    seen = _record_features(monkeypatch)
    out = invoke(other_market, str(trained_run), "buy-and-hold", "--data", str(other_market["csv"]),
                 "--split", "all", "--out", str(tmp_path / "bt.json"))
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "bt.json").read_text())
    data = PreparedData(other_market["prepared"])
    assert Path(result["data"]) == other_market["prepared"]
    segs = data.segments
    assert [s.symbol for s in segs] == ["AAA", "BBB"]
    # every bar after each symbol's warm-up, one block per symbol
    assert result["ranges"] == [[s.first, s.stop] for s in segs]
    assert result["bars"] == sum(s.stop - s.first for s in segs) == 4000 + 3200 - 2 * 1440
    assert result["symbols"] == ["AAA", "BBB"]
    ts = data.timestamps
    assert result["first"] == _iso(min(ts[s.first] for s in segs)) == "2025-01-06T00:00:00+00:00"
    assert result["last"] == _iso(max(ts[s.stop - 1] for s in segs))
    assert (f"bars scored: {result['bars']:,} of AAA, BBB, 2025-01-06 00:00 .. "
            f"{pd.Timestamp(result['last']).strftime('%Y-%m-%d %H:%M')} UTC (2 blocks, each traded from flat)"
            in out.output)
    rows = {r["name"]: r for r in result["results"]}
    ranges = [tuple(r) for r in result["ranges"]]
    assert rows["buy-and-hold"]["gross"]["total_return"] == pytest.approx(_buy_and_hold_gross(data, ranges),
                                                                          rel=1e-9, abs=1e-12)
    assert rows[str(trained_run)]["decisions"] == result["bars"] - 2  # the last bar of each block decides nothing
    # the run's saved zscore (fitted on its own train split), not statistics of the new data
    import yaml

    assert yaml.safe_load((trained_run / "config.yaml").read_text())["preprocess"] == ["zscore"]
    used = seen[str(other_market["prepared"].resolve())]
    train = PreparedData(small_prepared)
    x = np.asarray(data.features)
    expected = _zscore(x, rows_of(train.split("train")), fit_on=np.asarray(train.features))
    refitted = _zscore(x, rows_of(data.split("train")))
    scored = rows_of(ranges)
    np.testing.assert_allclose(used[scored], expected[scored], rtol=1e-5, atol=1e-5)
    assert not np.allclose(used[scored], refitted[scored], rtol=1e-3, atol=1e-3)


def test_a_date_range_scores_the_usable_bars_inside_it(other_market, trained_run, tmp_path) -> None:
    from himari.data import PreparedData
    from himari.data.splits import parse_time

    out = invoke(other_market, str(trained_run), "buy-and-hold", "--data", str(other_market["csv"]),
                 "--from", "2025-01-08T06:00", "--to", "2025-01-12", "--out", str(tmp_path / "bt.json"))
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "bt.json").read_text())
    data = PreparedData(other_market["prepared"])
    ts = np.asarray(data.timestamps)
    lo, hi = parse_time("2025-01-08T06:00"), parse_time("2025-01-12")
    expected = []
    for s in data.segments:  # by hand: the usable rows of each symbol inside [from, to)
        inside = np.flatnonzero((ts[s.first:s.stop] >= lo) & (ts[s.first:s.stop] < hi)) + s.first
        assert len(inside) and np.all(np.diff(inside) == 1)
        expected.append([int(inside[0]), int(inside[-1]) + 1])
    assert result["split"] == "all" and result["from"] == "2025-01-08T06:00" and result["to"] == "2025-01-12"
    assert result["ranges"] == expected
    assert result["bars"] == sum(b - a for a, b in expected)
    assert result["first"] == "2025-01-08T06:00:00+00:00" and result["last"] == "2025-01-11T23:55:00+00:00"
    bh = next(r for r in result["results"] if r["name"] == "buy-and-hold")
    assert bh["gross"]["total_return"] == pytest.approx(
        _buy_and_hold_gross(data, [tuple(r) for r in expected]), rel=1e-9, abs=1e-12)
    assert "all bars from 2025-01-08T06:00 to 2025-01-12, fee 0.001 + slippage 0.0005 per fill" in out.output

    # within a split: the test split's blocks, from 2025-01-14 on
    within = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--split", "test",
                    "--from", "2025-01-14", "--out", str(tmp_path / "t.json"))
    assert within.exit_code == 0, within.output
    res = json.loads((tmp_path / "t.json").read_text())
    lo = parse_time("2025-01-14")
    want = []
    for a, b in data.split("test"):
        inside = np.flatnonzero(ts[a:b] >= lo) + a
        if len(inside) >= 2:
            want.append([int(inside[0]), int(inside[-1]) + 1])
    assert res["split"] == "test" and res["ranges"] == want and want[0][0] > data.split("test")[0][0]


@pytest.mark.parametrize("args,text", [
    (("--from", "2025-01-09", "--to", "2025-01-08"), "--from 2025-01-09 must come before --to 2025-01-08"),
    (("--from", "2025-01-09", "--to", "2025-01-09"), "--from 2025-01-09 must come before --to 2025-01-09"),
    (("--from", "soonish"), "--from soonish: cannot parse"),
    (("--to", "2025-02-30"), "--to 2025-02-30: cannot parse"),
    (("--from", "2024-01-01", "--to", "2024-06-01"), "no bars to score in"),
    (("--split", "test", "--to", "2025-01-07"), "no bars to score in the test split of"),
    (("--split", "everything"), "--split 'everything': choose one of train, validation, test, all"),
])
def test_bad_selections_are_one_line_errors(other_market, tmp_path, args, text) -> None:
    out = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), *args,
                 "--out", str(tmp_path / "bt.json"), columns=300)
    assert out.exit_code == 2, out.output
    assert text in out.output and "Traceback" not in out.output
    assert not (tmp_path / "bt.json").exists()


def test_the_empty_range_error_gives_the_usable_span(other_market, tmp_path) -> None:
    out = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--from", "2024-01-01",
                 "--to", "2024-06-01", "--out", str(tmp_path / "bt.json"), columns=400)
    assert ("from 2024-01-01 to 2024-06-01 (a block needs two bars); its bars after the feature warm-up span "
            "2025-01-06 00:00 .. ") in out.output


# ------------------------------------------------------------------------ feature set


def _copy_prepared(src: Path, dst: Path, names=None, keep: int | None = None) -> Path:
    """A legitimate prepared set with other features: the same bars, the feature names renamed
    (``names``) or only the first ``keep`` feature columns."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "metadata.json").read_text())
    if keep is not None:
        features = np.load(dst / "features.npy")
        np.save(dst / "features.npy", np.ascontiguousarray(features[:, :keep]))
        meta["feature_dim"] = keep
        meta["feature_names"] = meta["feature_names"][:keep]
    if names is not None:
        meta["feature_names"] = names
    (dst / "metadata.json").write_text(json.dumps(meta))
    return dst


def test_a_run_records_the_names_of_its_training_features(trained_run, small_prepared) -> None:
    from himari.data import PreparedData
    from himari.training.assemble import load_trained

    names = PreparedData(small_prepared).feature_names
    assert load_trained(trained_run).context.feature_names == tuple(names) and len(names) == 60


def test_data_with_other_features_is_refused_naming_what_differs(other_market, trained_run, tmp_path) -> None:
    from himari.data import PreparedData

    names = PreparedData(other_market["prepared"]).feature_names
    renamed = _copy_prepared(other_market["prepared"], tmp_path / "renamed",
                             names=[f"mystery_{i}" for i in range(3)] + names[3:])
    out = invoke(other_market, str(trained_run), "--data", str(renamed), "--split", "all", "--out",
                 str(tmp_path / "a.json"), columns=400)
    assert out.exit_code == 2, out.output
    assert (f"{renamed} has 60 features, the run {trained_run} was trained on 60; missing: {names[0]}, "
            f"{names[1]}, {names[2]}; not in the run: mystery_0, mystery_1, mystery_2") in out.output
    fewer = _copy_prepared(other_market["prepared"], tmp_path / "fewer", keep=52)
    out = invoke(other_market, str(trained_run), "--data", str(fewer), "--out", str(tmp_path / "b.json"),
                 columns=400)
    assert out.exit_code == 2, out.output
    assert (f"{fewer} has 52 features, the run {trained_run} was trained on 60; missing: "
            f"{', '.join(names[52:57])} and 3 more;") in out.output and "not in the run" not in out.output
    swapped = _copy_prepared(other_market["prepared"], tmp_path / "swapped", names=[names[1], names[0], *names[2:]])
    out = invoke(other_market, str(trained_run), "--data", str(swapped), "--out", str(tmp_path / "c.json"),
                 columns=400)
    assert out.exit_code == 2 and "the same names in another order" in out.output
    assert not any((tmp_path / f).exists() for f in ("a.json", "b.json", "c.json"))


def test_a_run_saved_before_the_names_were_kept_is_checked_by_count(other_market, trained_run, tmp_path) -> None:
    from himari.training.checkpoint import load_checkpoint, save_checkpoint

    old = tmp_path / "old-run"
    shutil.copytree(trained_run, old, ignore=shutil.ignore_patterns(".lock"))
    for ckpt in (old / "checkpoints").glob("*.pt"):
        payload = load_checkpoint(ckpt)
        payload["model_context"].pop("feature_names")
        payload.pop("content_hash", None)
        save_checkpoint(ckpt, payload)
    renamed = _copy_prepared(other_market["prepared"], tmp_path / "renamed",
                             names=[f"x{i}" for i in range(60)])
    ok = invoke(other_market, str(old), "--data", str(renamed), "--split", "all", "--out", str(tmp_path / "a.json"))
    assert ok.exit_code == 0, ok.output  # names unknown: 60 features are accepted
    fewer = _copy_prepared(other_market["prepared"], tmp_path / "fewer", keep=52)
    out = invoke(other_market, str(old), "--data", str(fewer), "--out", str(tmp_path / "b.json"), columns=400)
    assert out.exit_code == 2, out.output
    assert f"{old}: its saved preprocessing cannot transform the 52 features of {fewer}" in out.output


# ------------------------------------------------------------------------ gross


def test_gross_equals_net_without_costs_and_exceeds_it_with_them(other_market, tmp_path) -> None:
    args = ("buy-and-hold", "never-trade", "random", "--data", str(other_market["csv"]), "--split", "all")
    free = invoke(other_market, *args, "--fee", "0", "--slippage", "0", "--json", "--out", str(tmp_path / "f.json"))
    assert free.exit_code == 0, free.output
    for r in json.loads((tmp_path / "f.json").read_text())["results"]:
        assert set(r["gross"]) == set(METRICS)
        assert r["gross"] == {k: r[k] for k in METRICS}, r["name"]
    costly = invoke(other_market, *args, "--json", "--out", str(tmp_path / "c.json"))
    rows = {r["name"]: r for r in json.loads((tmp_path / "c.json").read_text())["results"]}
    assert rows["random"]["n_trades"] > 100
    assert rows["random"]["gross"]["total_return"] > rows["random"]["total_return"]
    assert rows["random"]["gross"]["sharpe"] > rows["random"]["sharpe"]
    assert rows["buy-and-hold"]["gross"]["total_return"] > rows["buy-and-hold"]["total_return"]
    assert rows["never-trade"]["gross"] == {k: rows["never-trade"][k] for k in METRICS}
    # the same actions: the gross run of the costly scoring is the free scoring's net one
    free_rows = {r["name"]: r for r in json.loads((tmp_path / "f.json").read_text())["results"]}
    assert rows["random"]["gross"]["sharpe"] == free_rows["random"]["sharpe"]
    assert costly.exit_code == 0


def test_gross_columns_in_an_80_column_table(other_market, tmp_path) -> None:
    out = invoke(other_market, "buy-and-hold", "never-trade", "random", "--data", str(other_market["csv"]),
                 "--gross", "--out", str(tmp_path / "bt.json"))
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    for r in json.loads((tmp_path / "bt.json").read_text())["results"]:
        row = next(line for line in lines if line.startswith(r["name"] + " "))
        assert len(row) <= 80
        assert row.split()[1:5] == [f"{r['sharpe']:+.2f}", f"{100 * r['total_return']:+.2f}%",
                                    f"{r['gross']['sharpe']:+.2f}", f"{100 * r['gross']['total_return']:+.2f}%"]
    i = next(i for i, line in enumerate(lines) if line.startswith("strategy"))
    assert lines[i - 1].split() == ["gross", "gross", "in"]
    assert lines[i].split() == ["strategy", "Sharpe", "return", "Sharpe", "return", "max", "DD", "trades", "market",
                                "S/H/B", "%"]
    assert all(len(line) <= 80 for line in lines[i - 2:i + 5])
    plain = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--out", str(tmp_path / "p.json"))
    plain_lines = plain.output.splitlines()
    j = next(i for i, line in enumerate(plain_lines) if line.startswith("strategy"))
    assert plain_lines[j].split() == ["strategy", "Sharpe", "return", "max", "DD", "trades", "exposure", "S/H/B", "%"]
    assert "gross" not in plain_lines[j - 1]


# ------------------------------------------------------------------------ export


def _check_series(table: pd.DataFrame, data, ranges, result_row) -> None:
    from himari.data.splits import rows_of
    from himari.evaluation.series import COLUMNS

    assert list(table.columns) == list(COLUMNS)
    rows = rows_of(ranges)
    np.testing.assert_array_equal(table["row"].to_numpy(), rows)
    stamps = pd.to_datetime(table["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    np.testing.assert_array_equal(stamps.array.asi8, np.asarray(data.timestamps)[rows])
    np.testing.assert_array_equal(table["range"].to_numpy(), np.repeat(np.arange(len(ranges)),
                                                                       [b - a for a, b in ranges]))
    np.testing.assert_allclose(table["close"].to_numpy(), np.asarray(data.close)[rows])
    assert table["equity"].iloc[-1] == pytest.approx(1 + result_row["total_return"], rel=1e-9)
    assert np.prod(1 + table["gross_return"].to_numpy()) - 1 == pytest.approx(result_row["gross"]["total_return"],
                                                                              rel=1e-9, abs=1e-12)


def test_export_writes_every_strategys_series_and_an_index(other_market, trained_run, tmp_path) -> None:
    from himari.data import PreparedData

    export = tmp_path / "export"
    out = invoke(other_market, str(trained_run), "buy-and-hold", "random", "--data", str(other_market["csv"]),
                 "--split", "all", "--seed", "6", "--export", str(export), "--out", str(tmp_path / "bt.json"))
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "bt.json").read_text())
    run_file = f"{trained_run.parent.name}-{trained_run.name}.parquet"
    assert sorted(p.name for p in export.iterdir()) == sorted(["index.json", "buy-and-hold.parquet",
                                                               "random.parquet", run_file])
    index = json.loads((export / "index.json").read_text())
    assert index["format"] == "himari-export" and index["ranges"] == result["ranges"]
    assert {name: s["file"] for name, s in index["strategies"].items()} == {
        str(trained_run): run_file, "buy-and-hold": "buy-and-hold.parquet", "random": "random.parquet"}
    data = PreparedData(other_market["prepared"])
    ranges = [tuple(r) for r in result["ranges"]]
    for r in result["results"]:
        entry = index["strategies"][r["name"]]
        assert entry["kind"] == r["kind"] and entry["costs"] == result["costs"]
        assert entry["metrics"]["total_return"] == r["total_return"] and entry["gross"] == r["gross"]
        _check_series(pd.read_parquet(export / entry["file"]), data, ranges, r)
    # the last bar of each block takes no decision: HOLD there, whatever the strategy said
    from himari.evaluation.policy import baseline_actions

    said = baseline_actions("random", ranges, seed=6)  # a seed whose draws end a block on BUY or SELL
    ends = np.cumsum([b - a for a, b in ranges]) - 1
    assert (said[ends] != 1).any()
    random_series = pd.read_parquet(export / "random.parquet")
    assert (random_series["action"].to_numpy()[ends] == 1).all()
    keep = np.setdiff1d(np.arange(len(said)), ends)
    np.testing.assert_array_equal(random_series["action"].to_numpy()[keep], said[keep])

    # a previous export is replaced as a whole (here by CSV files)
    again = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--split", "all",
                   "--export", str(export), "--export-format", "csv", "--out", str(tmp_path / "bt2.json"))
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in export.iterdir()) == ["buy-and-hold.csv", "index.json"]
    r = json.loads((tmp_path / "bt2.json").read_text())["results"][0]
    _check_series(pd.read_csv(export / "buy-and-hold.csv"), data, ranges, r)


def test_export_refuses_a_directory_that_is_not_a_previous_export(other_market, tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    out = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--export", str(mine),
                 "--out", str(tmp_path / "bt.json"), columns=300)
    assert out.exit_code == 2 and "is not a previous himari export" in out.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not (tmp_path / "bt.json").exists()
    export = tmp_path / "export"
    assert invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--export", str(export),
                  "--out", str(tmp_path / "bt.json")).exit_code == 0
    (export / "notes.txt").write_text("keep me")
    out = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--export", str(export),
                 "--out", str(tmp_path / "bt.json"), columns=300)
    assert out.exit_code == 2 and "also holds files the export did not write (notes.txt)" in out.output
    assert (export / "notes.txt").read_text() == "keep me"


def test_a_failing_export_leaves_nothing_and_keeps_a_previous_one(other_market, tmp_path, monkeypatch) -> None:
    args = ("buy-and-hold", "never-trade", "random", "--data", str(other_market["csv"]))
    calls = []
    real = pd.DataFrame.to_parquet

    def fail_second(self, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, *a, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_second)
    folder = tmp_path / "out"
    folder.mkdir()
    out = invoke(other_market, *args, "--export", str(folder / "export"), "--out", str(folder / "bt.json"))
    assert out.exit_code != 0 and len(calls) == 2
    assert list(folder.iterdir()) == []  # no export, no temporary beside it, no JSON

    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert invoke(other_market, *args, "--export", str(folder / "export"),
                  "--out", str(folder / "bt.json")).exit_code == 0
    before = {p.name: p.read_bytes() for p in (folder / "export").iterdir()}
    calls.clear()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_second)
    out = invoke(other_market, *args, "--seed", "7", "--export", str(folder / "export"),
                 "--out", str(folder / "bt2.json"))
    assert out.exit_code != 0
    assert {p.name: p.read_bytes() for p in (folder / "export").iterdir()} == before
    assert sorted(p.name for p in folder.iterdir()) == ["bt.json", "export"]


def test_the_gross_table_fits_80_columns_at_its_widest_values() -> None:
    """Two-digit negative Sharpes, double-digit losses, five-digit trade counts, a 12-letter name."""
    import io

    from rich.console import Console

    from himari.cli.backtest import table_columns
    from himari.evaluation.report import metrics_table, print_table

    m = {"sharpe": -22.014, "total_return": -0.38771, "gross_sharpe": -12.5, "gross_return": -0.48311,
         "max_drawdown": 0.9913, "n_trades": 12345.0, "exposure": 1.0,
         "actions": {"SELL": 0.35, "HOLD": 0.53, "BUY": 0.12}, "collapsed": False}
    console = Console(file=io.StringIO(), width=80)
    print_table(console, metrics_table([("buy-and-hold", "test", m, False), ("never-trade", "test", m, False)],
                                       title="t", columns=table_columns(gross=True)))
    lines = console.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.startswith("buy-and-hold"))
    assert row.split() == ["buy-and-hold", "-22.01", "-38.77%", "-12.50", "-48.31%", "99.13%", "12,345", "100.0%",
                           "35/53/12"]


def test_export_file_names_are_safe_readable_and_distinct(tmp_path, monkeypatch) -> None:
    from himari.evaluation.export import file_names, slug

    assert slug("runs/flag-trader/20250101-120000", "run") == "flag-trader-20250101-120000"
    assert slug("/abs/runs/cgdt/20250101-120000/", "run") == "cgdt-20250101-120000"
    assert slug("my runs/a:b*?/x", "run") == "a_b_-x"
    assert slug("buy-and-hold", "baseline") == "buy-and-hold"
    (tmp_path / "models" / "mlp").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models" / "mlp")
    assert slug(".", "run") == "models-mlp" and slug("..", "run") == f"{tmp_path.name}-models"
    # two runs whose last two parts agree, and a run named like a baseline
    assert file_names([("a/runs/x", "run"), ("b/runs/x", "run"), ("random", "baseline"), ("q/random", "run")],
                      "csv") == ["runs-x.csv", "runs-x-2.csv", "random.csv", "q-random.csv"]
    assert file_names([("x/random", "run"), ("y/x/random", "run")], "parquet") == ["x-random.parquet",
                                                                                 "x-random-2.parquet"]


def test_a_bars_file_scored_on_its_default_split_says_so(other_market, tmp_path) -> None:
    out = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), "--out", str(tmp_path / "a.json"),
                 columns=300)
    assert out.exit_code == 0, out.output
    assert (f"{other_market['csv']} was prepared with the default split: scoring its test split (its last 15%); "
            "--split all or --from/--to score other bars") in out.output
    for args in (("--split", "test"), ("--from", "2025-01-08")):
        quiet = invoke(other_market, "buy-and-hold", "--data", str(other_market["csv"]), *args,
                       "--out", str(tmp_path / "b.json"), columns=300)
        assert quiet.exit_code == 0 and "default split" not in quiet.output
    prepared = invoke(other_market, "buy-and-hold", "--data", str(other_market["prepared"]),
                      "--out", str(tmp_path / "c.json"), columns=300)
    assert prepared.exit_code == 0 and "default split" not in prepared.output
