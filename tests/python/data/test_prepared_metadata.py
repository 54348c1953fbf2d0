"""A damaged prepared directory fails when it is opened, with a DataError naming the file, so
``data info``, ``train --data`` and ``backtest --data`` exit 2 with one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from himari.cli import app
from himari.data.prepared import PreparedData
from himari.errors import DataError


@pytest.fixture
def copy_prepared(prepared_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "prep"
    shutil.copytree(prepared_dir, out)
    return out


def _edit(key_path: str, value: Any = None, *, delete: bool = False) -> Callable[[dict[str, Any]], None]:
    def apply(meta: dict[str, Any]) -> None:
        *parents, last = key_path.split(".")
        node: Any = meta
        for k in parents:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if delete:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


METADATA_DEFECTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no splits": (_edit("splits", delete=True), "missing key 'splits'"),
    "no labeler": (_edit("labeler", delete=True), "missing key 'labeler'"),
    "no lookahead": (_edit("labeler.lookahead", delete=True), "'labeler.lookahead'"),
    "no files": (_edit("files", delete=True), "missing key 'files'"),
    "no segments": (_edit("segments", delete=True), "'segments'"),
    "no num_samples": (_edit("num_samples", delete=True), "'num_samples'"),
    "num_samples as text": (_edit("num_samples", "6000"), "'num_samples' must be a positive integer"),
    "feature names short": (_edit("feature_names", ["a"]), "'feature_names'"),
    "split out of range": (_edit("splits.train", [[0, 10**9]]), "'splits.train'"),
    "split reversed": (_edit("splits.test", [[50, 10]]), "'splits.test'"),
    "split not pairs": (_edit("splits.validation", [[1, 2, 3]]), "'splits.validation'"),
    "fold out of range": (_edit("folds.0.test", [[0, 6001]]), "'folds[0].test'"),
    "fold missing test": (_edit("folds.1.test", delete=True), "'folds[1]'"),
    "negative lookahead": (_edit("labeler.lookahead", -1), "'labeler.lookahead'"),
    "segment extra key": (_edit("segments.0.extra", 1), "'segments[0]'"),
    "segment past end": (_edit("segments.0.stop", 7000), "'segments[0]'"),
    "file outside": (_edit("files.features", "../features.npy"), "'files.features'"),
    "newer version": (_edit("version", 99), "newer himari"),
    "older version": (_edit("version", 1), "older himari"),
    "bad version": (_edit("version", "1"), "'version'"),
    "distribution": (_edit("label_distribution", {"SELL": 1}), "'label_distribution'"),
    "span": (_edit("span", "2023"), "'span'"),
}


@pytest.mark.parametrize("defect", sorted(METADATA_DEFECTS))
def test_damaged_metadata_is_refused_naming_the_file_and_key(copy_prepared, defect):
    edit, fragment = METADATA_DEFECTS[defect]
    path = copy_prepared / "metadata.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError) as e:
        PreparedData(copy_prepared)
    assert str(path) in str(e.value) and fragment in str(e.value), str(e.value)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"{not json", "cannot read the metadata"),
    (b"\xff\xfe\x00garbage", "cannot read the metadata"),
    (b"", "cannot read the metadata"),
    (b"[1, 2]", "not a himari prepared data set"),
    (b'{"format": "something-else"}', "not a himari prepared data set"),
])
def test_unreadable_metadata_is_refused(copy_prepared, content, fragment):
    path = copy_prepared / "metadata.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as e:
        PreparedData(copy_prepared)
    assert str(path) in str(e.value)


def _wrong_dtype(p: Path) -> None:
    a = np.load(p)
    np.save(p, a.astype(np.float32 if a.dtype == np.float64 else np.float64))


def _wrong_rows(p: Path) -> None:
    np.save(p, np.load(p)[:-1])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x93NUMPY garbage")


def _truncated(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:200])


@pytest.mark.parametrize("name", ["features", "labels", "targets", "open", "close", "timestamps"])
@pytest.mark.parametrize("damage", ["missing", "wrong dtype", "wrong rows", "garbage", "truncated"])
def test_missing_or_mis_shaped_arrays_are_refused_when_opened(copy_prepared, name, damage):
    p = copy_prepared / f"{name}.npy"
    if damage == "missing":
        p.unlink()
    else:
        {"wrong dtype": _wrong_dtype, "wrong rows": _wrong_rows, "garbage": _garbage, "truncated": _truncated}[damage](p)
    with pytest.raises(DataError) as e:
        PreparedData(copy_prepared)
    assert f"{name}.npy" in str(e.value)


def test_features_with_the_wrong_width_are_refused(copy_prepared):
    p = copy_prepared / "features.npy"
    np.save(p, np.load(p)[:, :59])
    with pytest.raises(DataError, match=r"features\.npy: holds float32 \(6000, 59\).*\(6000, 60\)"):
        PreparedData(copy_prepared)


def test_intact_directory_opens(copy_prepared):
    d = PreparedData(copy_prepared)
    assert d.features.shape == (6000, 60) and len(d.split("train")) == 1


@pytest.mark.parametrize("command", [
    ["data", "info", "{dir}"],
    ["backtest", "buy-and-hold", "--data", "{dir}", "--out", "{tmp}/bt.json"],
    ["train", "baseline-mlp", "--data", "{dir}", "--epochs", "1", "--device", "cpu"],
])
def test_commands_exit_2_with_one_line_on_a_damaged_directory(copy_prepared, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    meta = json.loads((copy_prepared / "metadata.json").read_text())
    del meta["splits"]
    (copy_prepared / "metadata.json").write_text(json.dumps(meta))
    args = [a.format(dir=copy_prepared, tmp=tmp_path) for a in command]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "metadata.json" in lines[0], res.output
    assert "missing key 'splits'" in lines[0]
    assert not (tmp_path / "bt.json").exists()
