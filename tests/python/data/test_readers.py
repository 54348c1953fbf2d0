"""Every reader and format: generic CSV, Binance klines, freqtrade caches, Parquet, compression."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from himari.data.ingest import import_bars, load_bars, read_bars
from himari.data.readers import detect_format, infer_symbol, read_source
from himari.errors import DataError


def _check_same(loaded, df: pd.DataFrame) -> None:
    f = loaded.frame
    assert len(f) == len(df)
    assert str(f["timestamp"].dtype) == "datetime64[ns, UTC]"
    np.testing.assert_array_equal(f["timestamp"].array.asi8, df["timestamp"].astype("datetime64[ns, UTC]").array.asi8)
    for c in ("open", "high", "low", "close", "volume"):
        assert f[c].dtype == np.float64
        np.testing.assert_allclose(f[c].to_numpy(), df[c].to_numpy(), rtol=1e-12)
    assert loaded.interval_seconds == 300


@pytest.mark.parametrize("ts_format", ["iso", "s", "ms", "us"])
def test_generic_csv_timestamp_units(tmp_path, bars, to_csv, write_csv, ts_format):
    df = bars(30)
    p = write_csv(f"x_{ts_format}.csv", to_csv(df, ts_format))
    assert detect_format(p) == "csv"
    _check_same(load_bars([p]), df)


def test_generic_csv_headerless_semicolon_aliases_and_gzip(bars, write_csv):
    df = bars(20)
    ms = df["timestamp"].array.asi8 // 10**6
    body = "\n".join(f"{t};{o};{h};{l};{c};{v}" for t, o, h, l, c, v in
                     zip(ms, df.open, df.high, df.low, df.close, df.volume))
    p = write_csv("nohdr.csv.gz", body + "\n")
    _check_same(load_bars([p]), df)
    alias = df.rename(columns={"timestamp": "Date", "open": "Open", "high": "High", "low": "Low",
                               "close": "Close", "volume": "Volume BTC"})
    alias["Date"] = alias["Date"].dt.strftime("%Y-%m-%d %H:%M:%S")  # naive: taken as UTC
    p2 = write_csv("alias.csv", alias.to_csv(index=False))
    _check_same(load_bars([p2]), df)


def _binance_rows(df: pd.DataFrame, unit: str) -> str:
    div = {"ms": 10**6, "us": 10**3}[unit]
    t = df["timestamp"].array.asi8 // div
    step = 300 * 10**9 // div
    rows = [f"{a},{o},{h},{l},{c},{v},{a + step - 1},{v * c},42,{v / 2},{v * c / 2},0"
            for a, o, h, l, c, v in zip(t, df.open, df.high, df.low, df.close, df.volume)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_klines_ms_and_us(tmp_path, bars, write_csv, unit):
    df = bars(25)
    p = write_csv(f"BTCUSDT-5m-2023-01.csv", _binance_rows(df, unit))
    assert detect_format(p) == "binance"
    loaded = load_bars([p])
    _check_same(loaded, df)
    assert loaded.frame["symbol"].iat[0] == "BTCUSDT"
    # the public dumps come zipped: one CSV inside
    z = tmp_path / f"BTCUSDT-5m-2023-02-{unit}.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("BTCUSDT-5m-2023-02.csv", _binance_rows(df, unit))
    _check_same(load_bars([z], format="binance"), df)


def test_binance_with_header(bars, write_csv):
    df = bars(10)
    hdr = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"
    p = write_csv("ETHUSDT-5m-2024-01.csv", hdr + _binance_rows(df, "ms"))
    assert detect_format(p) == "binance"
    _check_same(load_bars([p]), df)


def test_freqtrade_feather_and_json(tmp_path, bars):
    df = bars(40)
    ft = df.rename(columns={"timestamp": "date"})
    p = tmp_path / "BTC_USDT-5m.feather"
    ft.to_feather(p)
    assert detect_format(p) == "freqtrade"
    loaded = load_bars([p])
    _check_same(loaded, df)
    assert loaded.frame["symbol"].iat[0] == "BTC/USDT"
    rows = [[int(t // 10**6), o, h, l, c, v] for t, o, h, l, c, v in
            zip(df["timestamp"].array.asi8, df.open, df.high, df.low, df.close, df.volume)]
    pj = tmp_path / "ETH_USDT-5m.json"
    pj.write_text(json.dumps(rows))
    _check_same(load_bars([pj]), df)
    pg = tmp_path / "ETH_USDT-5m.json.gz"
    pg.write_bytes(gzip.compress(json.dumps(rows).encode()))
    _check_same(load_bars([pg]), df)


def test_parquet_generic_and_roundtrip(tmp_path, bars):
    df = bars(30)
    p = tmp_path / "generic.parquet"
    df.set_index("timestamp").to_parquet(p)  # timestamp as index: handled
    assert detect_format(p) == "parquet"
    _check_same(load_bars([p]), df)
    out = tmp_path / "bars.parquet"
    import_bars([p], out)
    again = read_bars(out)
    _check_same(again, df)
    # a himari bars file is itself importable (and keeps its symbol column)
    _check_same(load_bars([out]), df)


def test_parquet_with_an_unnamed_time_index(tmp_path, bars):
    """``to_parquet`` after a resample writes the time as an unnamed index: it is still the time."""
    df = bars(30)
    p = tmp_path / "unnamed.parquet"
    df.set_index("timestamp").rename_axis(None).to_parquet(p)
    _check_same(load_bars([p]), df)
    both = tmp_path / "both.parquet"  # the time twice, as the index and as a column: which one?
    df.set_index(df["timestamp"]).to_parquet(both)
    with pytest.raises(DataError, match="both the index and a column are named 'timestamp'"):
        load_bars([both])


def test_monthly_files_concatenate_and_symbols_stack(tmp_path, bars, to_csv, write_csv):
    df = bars(60)
    jan = write_csv("BTCUSDT-5m-2023-01.csv", to_csv(df.iloc[:30]))
    feb = write_csv("BTCUSDT-5m-2023-02.csv", to_csv(df.iloc[30:]))
    eth = write_csv("ETHUSDT-5m-2023-01.csv", to_csv(bars(60, seed=9, price=10.0)))
    loaded = load_bars([feb, eth, jan])  # order of files does not matter
    f = loaded.frame
    assert sorted(f["symbol"].unique()) == ["BTCUSDT", "ETHUSDT"]
    btc = f[f["symbol"] == "BTCUSDT"]
    np.testing.assert_allclose(btc["close"].to_numpy(), df["close"].to_numpy())
    assert [s.symbol for s in loaded.report.symbols] == ["BTCUSDT", "ETHUSDT"]
    # one file holding two symbols in a 'symbol' column
    both = pd.concat([df.assign(symbol="AAA"), bars(60, seed=2).assign(symbol="BBB")])
    p = write_csv("multi.csv", both.assign(timestamp=both.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(index=False))
    assert sorted(load_bars([p]).frame["symbol"].unique()) == ["AAA", "BBB"]


def test_symbol_override_and_inference():
    assert infer_symbol("BTC_USDT-5m.feather") == "BTC/USDT"
    assert infer_symbol("BTCUSDT-5m-2023-01.zip") == "BTCUSDT"
    assert infer_symbol("btcusdt_5m.csv.gz") == "BTCUSDT"
    assert infer_symbol("ethusdt.csv") == "ETHUSDT"
    # a dash between base and quote is a pair too; the quote is never cut off
    assert infer_symbol("BTC-USD.csv") == "BTC/USD"
    assert infer_symbol("BTC-EUR.csv") == "BTC/EUR"
    assert infer_symbol("ETH-USD_1h.csv") == "ETH/USD"
    assert infer_symbol("btc-usdt.csv.gz") == "BTC/USDT"
    assert infer_symbol("BTC-USD-SWAP.csv") == "BTC-USD-SWAP"
    # a trailing date is dropped like an interval, so yearly or monthly files of one symbol join
    assert infer_symbol("aapl_2023.csv") == "AAPL"
    assert infer_symbol("BTCUSDT-2023-01.csv") == "BTCUSDT"


def test_files_of_two_pairs_with_one_base_stay_apart(tmp_path, bars, to_csv, write_csv):
    """BTC-USD.csv and BTC-EUR.csv are two instruments: joined, one series would jump between
    two currencies at the seam."""
    usd = write_csv("BTC-USD.csv", to_csv(bars(40)))
    eur = write_csv("BTC-EUR.csv", to_csv(bars(40, start="2023-01-01 03:20", price=93.0)))
    frame = load_bars([usd, eur]).frame
    assert frame.groupby("symbol").size().to_dict() == {"BTC/EUR": 40, "BTC/USD": 40}


def test_source_record_has_hash(bars, to_csv, write_csv):
    p = write_csv("h.csv", to_csv(bars(5)))
    _, info = read_source(p)
    import hashlib

    assert info["sha256"] == hashlib.sha256(Path(p).read_bytes()).hexdigest()
    assert info["format"] == "csv" and info["rows"] == 5
