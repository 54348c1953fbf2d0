"""``himari report``: the page's figures and tables against the files and runs they come from,
its bad input, and the page opened in headless Chromium as a person would open it."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from himari.cli import app

pytest.importorskip("plotly", reason="himari report needs plotly (pip install 'himari[report]')")

runner = CliRunner()
FEE, SLIPPAGE = 1e-3, 5e-4
BASELINES = ("buy-and-hold", "never-trade", "random")


def invoke(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


# --- a fake evaluation directory, in the format `himari evaluate` writes ------------------------


def make_evaluation(out: Path, prepared: Path, *, seeds: tuple[int, ...] = (0, 1), n_folds: int = 3,
                    cpcv: bool = True, pbo: float | None = 0.25) -> Path:
    """An evaluation directory over ``n_folds`` consecutive out-of-sample blocks of the validation
    and test rows of ``prepared``: random-ish model actions per seed, the baselines, their per-bar
    series (per_bar on the real bars, so series and metrics agree) and made-up statistics/gates."""
    import pandas as pd

    from himari.data import PreparedData
    from himari.evaluation.policy import baseline_actions, evaluate_actions
    from himari.evaluation.series import per_bar
    from himari.trading import EnvConfig

    data = PreparedData(prepared)
    o, c, ts = data.open, data.close, data.timestamps
    start, stop = data.split("validation")[0][0], data.split("test")[-1][1]
    edges = np.linspace(start, stop, n_folds + 1).astype(int)
    folds = [(int(edges[i]), int(edges[i + 1])) for i in range(n_folds)]
    env = EnvConfig(fee=FEE, slippage=SLIPPAGE)
    strategies = {f"model-seed-{s}": np.random.default_rng(100 + s).choice(3, size=stop - start, p=[0.1, 0.8, 0.1])
                  for s in seeds}
    strategies.update({b: baseline_actions(b, folds, seed=3) for b in BASELINES})

    def iso(row: int) -> str:
        return pd.Timestamp(int(ts[row]), unit="ns", tz="UTC").isoformat()

    fold_docs = []
    for k, (a, b) in enumerate(folds):
        part = slice(a - start, b - start)
        fold_docs.append({
            "fold": k, "test_span": {"start": iso(a), "end": iso(b - 1)},
            "runs": {str(s): {"run_dir": f"runs/seed-{s}/fold-{k}",
                              "metrics": evaluate_actions(o, c, [(a, b)], strategies[f"model-seed-{s}"][part], env)}
                     for s in seeds},
            "baselines": {n: evaluate_actions(o, c, [(a, b)], strategies[n][part], env) for n in BASELINES}})
    chained = {name: evaluate_actions(o, c, folds, acts, env) for name, acts in strategies.items()}
    per_seed = {str(s): chained[f"model-seed-{s}"] for s in seeds}
    keys = [k for k, v in per_seed[str(seeds[0])].items() if isinstance(v, float)]
    (out / "series").mkdir(parents=True)
    series = {}
    for name, acts in strategies.items():
        per_bar(o, c, ts, folds, acts, env).to_parquet(out / "series" / f"{name}.parquet")
        series[name] = f"series/{name}.parquet"
    doc = {
        "format": "himari-evaluation", "version": 1, "model": "baseline-mlp", "data": str(prepared),
        "created_at": "2026-01-02T03:04:05+00:00",
        "config": {"folds": n_folds, "seeds": list(seeds), "fee": FEE, "slippage": SLIPPAGE},
        "folds": fold_docs,
        "walk_forward": {"seeds": per_seed,
                         "mean": {k: float(np.mean([m[k] for m in per_seed.values()])) for k in keys},
                         "std": {k: float(np.std([m[k] for m in per_seed.values()])) for k in keys},
                         "baselines": {n: chained[n] for n in BASELINES}},
        "cpcv": ({"paths": [{"seed": s, "path": p, "sharpe": 0.1 * p - 0.05 * s} for s in seeds for p in range(3)],
                  "sharpe": {"mean": 0.05, "std": 0.09}} if cpcv else None),
        "statistics": {"n_trials": len(seeds), "psr": 0.61, "dsr": 0.42, "pbo": pbo,
                       "p_value": {"vs_buy_and_hold": 0.37, "vs_never_trade": 0.08},
                       "method": "stationary bootstrap", "block_length": 48, "resamples": 1000},
        "gates": [{"name": "dsr-at-least", "threshold": 0.95, "value": 0.42, "passed": False,
                   "description": "deflated Sharpe ratio at least the threshold"},
                  {"name": "beats-never-trade", "threshold": 0.1, "value": 0.08, "passed": True,
                   "description": "p-value against never-trade below the threshold"}],
        "series": series}
    (out / "evaluation.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def evaluation(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    return make_evaluation(tmp_path_factory.mktemp("evaluations") / "mlp-wf", small_prepared)


@pytest.fixture(scope="session")
def evaluation_nulls(tmp_path_factory: pytest.TempPathFactory, small_prepared: Path) -> Path:
    """One seed, no CPCV, no PBO: the optional parts null."""
    return make_evaluation(tmp_path_factory.mktemp("evaluations") / "one-seed", small_prepared, seeds=(0,),
                           cpcv=False, pbo=None)


@pytest.fixture(scope="session")
def eval_report(tmp_path_factory: pytest.TempPathFactory, evaluation: Path) -> str:
    out = tmp_path_factory.mktemp("reports") / "eval.html"
    result = invoke("report", evaluation, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"written {out}" in result.output
    return out.read_text(encoding="utf-8")


# --- reading the page back ---------------------------------------------------------------------


class _Tables(HTMLParser):
    """Every <table> of a page: its class and its rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str, css: str) -> list[list[dict[str, str]]]:
    """The tables of class ``css``, each as a list of {header: cell} rows."""
    parser = _Tables()
    parser.feed(html)
    return [[dict(zip(rows[0], r)) for r in rows[1:]] for cls, rows in parser.tables if cls == css]


def figure(html: str, key: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout of the figure ``key``, decoded from its ``Plotly.newPlot`` call."""
    m = re.search(r'Plotly\.newPlot\(\s*"figure-' + re.escape(key) + r'",\s*', html)
    assert m, f"no figure {key}"
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(html, m.end())
    layout, _ = decoder.raw_decode(html, re.compile(r",\s*").match(html, end).end())
    return data, layout


def values(array: Any) -> np.ndarray:
    """A trace's array: a JSON list or plotly's typed array ({dtype, bdata})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return np.asarray(array)


def series_ms(table: Any) -> np.ndarray:
    import pandas as pd

    return ((pd.to_datetime(table["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC"))
            / pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.float64)


def fmt_ratio(x: float) -> str:
    return f"{x:+.2f}"


def fmt_pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


# --- content ---------------------------------------------------------------------------------


def test_equity_and_drawdown_traces_are_the_evaluation_series(eval_report: str, evaluation: Path) -> None:
    import pandas as pd

    data, layout = figure(eval_report, "equity")
    assert layout["yaxis"]["type"] == "log" and "buy-and-hold" in layout["title"]["text"]
    by_name = {t["name"]: t for t in data}
    label = str(evaluation)
    assert set(by_name) == {f"{label} · seed 0", f"{label} · seed 1", *BASELINES}
    assert by_name["buy-and-hold"].get("visible", True) is True
    assert by_name["never-trade"]["visible"] == "legendonly" and by_name["random"]["visible"] == "legendonly"
    drawdowns = {t["name"]: t for t in figure(eval_report, "drawdown")[0]}
    for name, strategy in ((f"{label} · seed 1", "model-seed-1"), ("buy-and-hold", "buy-and-hold")):
        table = pd.read_parquet(evaluation / "series" / f"{strategy}.parquet")
        np.testing.assert_array_equal(values(by_name[name]["y"]), table["equity"].to_numpy())
        np.testing.assert_array_equal(values(by_name[name]["x"]), series_ms(table))
        eq = table["equity"].to_numpy()
        peak = np.array([eq[:i + 1].max() for i in range(len(eq))])
        np.testing.assert_allclose(values(drawdowns[name]["y"]), eq / peak - 1, rtol=0, atol=1e-15)
    # the chained series ends where the walk-forward metrics say
    doc = json.loads((evaluation / "evaluation.json").read_text())
    assert values(by_name[f"{label} · seed 0"]["y"])[-1] - 1 == pytest.approx(
        doc["walk_forward"]["seeds"]["0"]["total_return"], rel=1e-9)


def test_every_figure_is_there_with_its_title(eval_report: str) -> None:
    titles = {key: figure(eval_report, key)[1]["title"]["text"]
              for key in ("equity", "drawdown", "rolling-sharpe", "positions", "action-mix")}
    assert "Equity after costs" in titles["equity"] and "(log scale)" in titles["equity"]
    assert "underwater" in titles["drawdown"]
    assert "Rolling Sharpe" in titles["rolling-sharpe"]
    assert "Position" in titles["positions"] and "price" in titles["positions"]
    assert "Action mix per fold" in titles["action-mix"]
    assert eval_report.count("Plotly.newPlot(") == 5


def test_positions_markers_sit_on_the_decisions_that_changed_the_position(eval_report: str,
                                                                           evaluation: Path) -> None:
    import pandas as pd

    table = pd.read_parquet(evaluation / "series" / "model-seed-0.parquet")
    traces = {t["name"]: t for t in figure(eval_report, "positions")[0]}
    pos, rng, ms = table["position"].to_numpy(), table["range"].to_numpy(), series_ms(table)
    buys = [i for i in range(len(pos) - 1) if rng[i + 1] == rng[i] and pos[i + 1] > pos[i]]
    sells = [i for i in range(len(pos) - 1) if rng[i + 1] == rng[i] and pos[i + 1] < pos[i]]
    assert buys and sells
    np.testing.assert_array_equal(values(traces["BUY"]["x"]), ms[buys])
    np.testing.assert_array_equal(values(traces["SELL"]["y"]), table["close"].to_numpy()[sells])
    # the position line is a step function drawn through its change points: it holds the value at every bar
    px, py = values(traces["position"]["x"]), values(traces["position"]["y"])
    at = np.searchsorted(px, ms, side="right") - 1
    np.testing.assert_array_equal(py[at], pos)


def test_action_mix_is_the_mean_over_seeds_per_fold(eval_report: str, evaluation: Path) -> None:
    doc = json.loads((evaluation / "evaluation.json").read_text())
    bars = {t["name"]: t for t in figure(eval_report, "action-mix")[0]}
    assert list(bars["BUY"]["x"]) == ["fold 0", "fold 1", "fold 2"]
    for action in ("SELL", "HOLD", "BUY"):
        expected = [np.mean([run["metrics"]["actions"][action] for run in fold["runs"].values()])
                    for fold in doc["folds"]]
        np.testing.assert_allclose(values(bars[action]["y"]), expected, rtol=1e-12)


def test_fold_gate_and_statistics_tables_show_the_evaluation(eval_report: str, evaluation: Path) -> None:
    doc = json.loads((evaluation / "evaluation.json").read_text())
    [folds] = tables_of(eval_report, "folds")
    assert len(folds) == 3 * 2  # one row per fold and seed
    for fold in doc["folds"]:
        bh = fold["baselines"]["buy-and-hold"]
        for seed, run in fold["runs"].items():
            m = run["metrics"]
            row = next(r for r in folds if r["fold"] == str(fold["fold"]) and r["strategy"] == f"seed {seed}")
            assert row["Sharpe"] == fmt_ratio(m["sharpe"]) and row["return"] == fmt_pct(m["total_return"])
            assert row["trades"] == f"{m['n_trades']:,.0f}" and row["B&H Sharpe"] == fmt_ratio(bh["sharpe"])
            assert row["test span"].startswith(fold["test_span"]["start"][:10])
    [gates] = tables_of(eval_report, "gates")
    assert [(g["gate"], g["value"], g["threshold"], g["result"]) for g in gates] == [
        ("dsr-at-least", "0.42", "0.95", "FAILED"), ("beats-never-trade", "0.08", "0.1", "passed")]
    [stats] = tables_of(eval_report, "statistics")
    cells = {r["statistic"]: r["value"] for r in stats}
    assert cells["deflated Sharpe ratio (DSR)"] == "0.420" and cells["probabilistic Sharpe ratio (PSR)"] == "0.610"
    assert cells["probability of backtest overfitting (PBO)"] == "0.250"
    assert cells["p-value, model vs buy-and-hold"] == "0.370" and cells["CPCV paths"] == "6"
    assert cells["CPCV Sharpe"] == "+0.05 ± 0.09"


def test_null_cpcv_and_pbo_are_shown_as_absent(tmp_path: Path, evaluation_nulls: Path) -> None:
    out = tmp_path / "r.html"
    result = invoke("report", evaluation_nulls, "--out", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    [stats] = tables_of(html, "statistics")
    cells = {r["statistic"]: r["value"] for r in stats}
    assert cells["probability of backtest overfitting (PBO)"] == "not computed" and cells["CPCV"] == "not run"
    [row] = tables_of(html, "leaderboard")[0]
    assert row["PBO"] == "—" and row["gates"] == "1/2 passed"
    # one seed: its trace is named after the target alone
    assert {t["name"] for t in figure(html, "equity")[0]} == {str(evaluation_nulls), *BASELINES}


def test_leaderboard_of_a_run_and_evaluations(tmp_path: Path, trained_run: Path, evaluation: Path,
                                              evaluation_nulls: Path) -> None:
    """One row per target, best Sharpe first; the run's row is its test backtest (``himari
    backtest`` and the Trainer's own test evaluation agree on it); two evaluations of the same
    bars draw buy-and-hold once, a run on other bars draws its own."""
    out = tmp_path / "r.html"
    result = invoke("report", trained_run, evaluation, evaluation_nulls, "--out", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    [board] = tables_of(html, "leaderboard")
    summary = json.loads((trained_run / "summary.json").read_text())["test"]
    docs = {str(p): json.loads((p / "evaluation.json").read_text()) for p in (evaluation, evaluation_nulls)}
    expected = {str(trained_run): summary["model"]["sharpe"],
                **{k: d["walk_forward"]["mean"]["sharpe"] for k, d in docs.items()}}
    assert [r["target"].removesuffix(" collapsed") for r in board] == sorted(expected, key=lambda k: -expected[k])
    rows = {r["target"].removesuffix(" collapsed"): r for r in board}
    run = rows[str(trained_run)]
    assert run["Sharpe"] == fmt_ratio(summary["model"]["sharpe"])
    assert run["return"] == fmt_pct(summary["model"]["total_return"])
    assert run["B&H Sharpe"] == fmt_ratio(summary["buy-and-hold"]["sharpe"])
    assert run["Sharpe − B&H"] == fmt_ratio(summary["model"]["sharpe"] - summary["buy-and-hold"]["sharpe"])
    assert run["scored on"].startswith("test split") and run["gates"] == "—" and run["DSR"] == "—"
    wf = docs[str(evaluation)]["walk_forward"]
    ev = rows[str(evaluation)]
    assert ev["Sharpe"] == f"{fmt_ratio(wf['mean']['sharpe'])} ± {wf['std']['sharpe']:.2f}"
    assert ev["scored on"] == "walk-forward, 3 folds x 2 seeds" and ev["PBO"] == "0.250"
    assert ev["B&H return"] == fmt_pct(wf["baselines"]["buy-and-hold"]["total_return"])
    names = [t["name"] for t in figure(html, "equity")[0]]
    assert names.count("buy-and-hold") == 1
    assert [n for n in names if n.startswith("buy-and-hold")] == ["buy-and-hold", f"buy-and-hold ({evaluation})"]
    trace = next(t for t in figure(html, "equity")[0] if t["name"] == str(trained_run))
    assert values(trace["y"])[-1] - 1 == pytest.approx(summary["model"]["total_return"], rel=1e-9)
    # the run has no gates, said in words; both evaluations list theirs
    assert html.count("No gates: a run directory") == 1 and len(tables_of(html, "gates")) == 2


def test_split_and_data_choose_what_a_run_is_scored_on(tmp_path: Path, trained_run: Path,
                                                       small_prepared: Path) -> None:
    from himari.data import PreparedData

    other = tmp_path / "other"
    shutil.copytree(small_prepared, other)
    out = tmp_path / "r.html"
    result = invoke("report", trained_run, "--split", "validation", "--data", other, "--out", out)
    assert result.exit_code == 0, result.output
    html = out.read_text()
    bars = sum(b - a for a, b in PreparedData(small_prepared).split("validation"))
    [row] = tables_of(html, "leaderboard")[0]
    assert row["scored on"] == f"validation split, {bars:,} bars"
    assert "DSR" not in row and "gates" not in row  # runs alone: no evaluation columns
    assert row["Sharpe"] == fmt_ratio(json.loads((trained_run / "summary.json").read_text())["validation"]["model"]["sharpe"])
    assert f"on {other}:" in html
    [folds] = tables_of(html, "folds")
    assert [r["fold"] for r in folds] == ["validation"]


def test_plotly_js_is_embedded_once_and_nothing_is_fetched(eval_report: str) -> None:
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert eval_report.count(bundle) == 1 and eval_report.count("* plotly.js v") == 1
    page = eval_report.replace(bundle, "")
    assert "<script src" not in page.replace(" ", "").lower()
    assert "http://" not in page and "https://" not in page  # nothing outside the bundle points anywhere
    # the bundle is the bulk of the page: the figures and tables of 6,000 bars add little
    assert len(page) < 1_000_000


# --- bad input ---------------------------------------------------------------------------------


def _evaluation_with(tmp_path: Path, source: Path, edit: Any) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(source, copy)
    doc = json.loads((copy / "evaluation.json").read_text())
    edit(doc, copy)
    (copy / "evaluation.json").write_text(json.dumps(doc))
    return copy


@pytest.mark.parametrize("case, message", [
    ("no-targets", "give at least one run directory or evaluation directory"),
    ("missing", "no such directory"),
    ("plain-dir", "neither a run directory (no config.yaml) nor an evaluation directory"),
    ("a-file", "a file; expected a run directory"),
    ("format", "format 'something-else' is not 'himari-evaluation'"),
    ("version", "himari-evaluation version 2 is not supported"),
    ("missing-key", "missing key 'walk_forward.std'"),
    ("missing-series", "missing (evaluation.json lists it as the series of 'model-seed-1')"),
    ("out-is-dir", "is a directory; give the report's file name"),
    ("out-under-file", "is a file, not a directory"),
    ("bad-split", "--split: expected one of train, validation, test"),
    ("data-without-run", "--data: only run directories are scored"),
    ("window", "--window: a rolling Sharpe ratio needs at least 2 bars"),
    ("window-too-long", "--window 1000000000: longer than the shortest series"),
    ("twice", "given twice"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, evaluation: Path, case: str,
                                                         message: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = work / "report.html"
    targets: list[Any] = [evaluation]
    extra: list[Any] = []
    if case == "no-targets":
        targets = []
    elif case == "missing":
        targets = [work / "nowhere"]
    elif case == "plain-dir":
        (work / "empty").mkdir()
        targets = [work / "empty"]
    elif case == "a-file":
        (work / "notes.txt").write_text("x")
        targets = [work / "notes.txt"]
    elif case == "format":
        targets = [_evaluation_with(work, evaluation, lambda d, p: d.update(format="something-else"))]
    elif case == "version":
        targets = [_evaluation_with(work, evaluation, lambda d, p: d.update(version=2))]
    elif case == "missing-key":
        targets = [_evaluation_with(work, evaluation, lambda d, p: d["walk_forward"].pop("std"))]
    elif case == "missing-series":
        targets = [_evaluation_with(work, evaluation, lambda d, p: (p / "series" / "model-seed-1.parquet").unlink())]
    elif case == "out-is-dir":
        out = work
    elif case == "out-under-file":
        (work / "file").write_text("x")
        out = work / "file" / "report.html"
    elif case == "bad-split":
        extra = ["--split", "holdout"]
    elif case == "data-without-run":
        extra = ["--data", str(evaluation)]
    elif case == "window":
        extra = ["--window", "1"]
    elif case == "window-too-long":
        extra = ["--window", str(10**9)]
    elif case == "twice":
        targets = [evaluation, evaluation]
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    result = invoke("report", *targets, "--out", out, *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # no report, no temporary


@pytest.mark.parametrize("where", ["run-config", "evaluation-json", "run-dir-new-file", "data-file",
                                   "run-own-data", "run-own-bars-file"])
def test_a_report_never_writes_over_what_it_reads(tmp_path: Path, trained_run: Path, evaluation: Path,
                                                  small_prepared: Path, where: str) -> None:
    """--out naming an input, or any non-HTML file inside an input directory, is refused before
    scoring and leaves every input byte for byte as it was (a report written over a run's
    config.yaml or an evaluation's evaluation.json would destroy them). A run's own data set,
    named in its config.yaml rather than on the command line, is an input too."""
    import yaml

    run, ev = tmp_path / "run", tmp_path / "evaluation"
    shutil.copytree(trained_run, run)
    shutil.copytree(evaluation, ev)
    bars = tmp_path / "bars.parquet"
    bars.write_bytes(b"not read before the refusal")
    own = tmp_path / "prepared"
    shutil.copytree(small_prepared, own)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"] = str(bars if where == "run-own-bars-file" else own)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    targets: list[Any] = [run, ev]
    extra: list[Any] = []
    out = {"run-config": run / "config.yaml", "evaluation-json": ev / "evaluation.json",
           "run-dir-new-file": run / "report.txt", "data-file": bars, "run-own-data": own / "metadata.json",
           "run-own-bars-file": bars}[where]
    if where == "data-file":
        targets, extra = [run], ["--data", bars]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = invoke("report", *targets, "--out", out, *extra)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert ("is the input" if where in ("data-file", "run-own-bars-file") else
            "only an .html page may be written") in message, message
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_evaluations_own_report_page_may_be_written_again(tmp_path: Path, evaluation: Path) -> None:
    ev = tmp_path / "evaluation"
    shutil.copytree(evaluation, ev)
    (ev / "report.html").write_text("old page")
    result = invoke("report", ev, "--out", ev / "report.html")
    assert result.exit_code == 0, result.output
    assert (ev / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_without_plotly_the_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           evaluation: Path) -> None:
    import himari.plugin.extras as extras

    real = extras.is_installed
    monkeypatch.setattr(extras, "is_installed", lambda m: m != "plotly" and real(m))
    result = invoke("report", evaluation, "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and "pip install 'himari[report]'" in result.output
    assert not (tmp_path / "r.html").exists()


# --- in a browser ------------------------------------------------------------------------------

CHECK_FIGURES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => ({
    id: div.id,
    svg: div.querySelector('.main-svg') !== null,
    traces: (div._fullData || []).length,
    drawn: div.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length,
    paths: div.querySelectorAll('.scatterlayer path.js-line, .barlayer path, .scatterlayer path.point').length,
    width: div.getBoundingClientRect().width}))"""


def test_the_page_draws_every_figure_in_headless_chromium(tmp_path: Path, trained_run: Path,
                                                          evaluation: Path) -> None:
    """What a person sees: the file opened from disk in Chromium, offline; no console error, no
    request leaves the file, every figure has its SVG with its traces drawn. A screenshot of the
    page is kept with the test's files."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright drives the browser (pip install playwright)")

    out = tmp_path / "report.html"
    result = invoke("report", trained_run, evaluation, "--out", out)
    assert result.exit_code == 0, result.output
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: problems.append(f"request {r.url}")
                    if not r.url.startswith(("file:", "data:", "blob:")) else None)
            page.goto(out.as_uri(), wait_until="load")
            figures = page.evaluate(CHECK_FIGURES)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert [f["id"] for f in figures] == ["figure-equity", "figure-drawdown", "figure-rolling-sharpe",
                                          "figure-positions", "figure-action-mix"]
    # the run and two seeds, buy-and-hold of each market and the hidden baselines
    n_lines = 1 + 2 + 2 + 2
    expected = {"figure-equity": n_lines, "figure-drawdown": n_lines, "figure-rolling-sharpe": n_lines,
                "figure-positions": 2 * 4, "figure-action-mix": 3}
    for f in figures:
        assert f["svg"] and f["traces"] == expected[f["id"]], f
        assert f["drawn"] > 0 and f["paths"] > 0 and f["width"] > 800, f
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
