"""LightGCN-format loader and the `bookrec bench lightgcn` command."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.data import lightgcn_txt
from engine.errors import FormatError, InputFileError
from tests.conftest import SHARED_DATA


@pytest.fixture()
def tiny(tmp_path):
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    train.write_text("0 0 1 2\n1 2 3\n2 0 3 4\n3\n")
    test.write_text("0 3\n1 1\n2 2\n")
    return train, test


def test_load(tiny) -> None:
    data = lightgcn_txt.load(*tiny)
    assert (data.n_users, data.n_items) == (4, 5)
    assert data.train.nnz == 8 and data.test.nnz == 3
    assert data.train[0].indices.tolist() == [0, 1, 2]
    assert data.train[3].nnz == 0  # a user line without items adds the user, no interactions
    assert data.test[2].indices.tolist() == [2]
    assert data.valid is None


def test_bad_input(tmp_path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n1 x\n")
    with pytest.raises(FormatError, match="bad.txt:2"):
        lightgcn_txt.load(bad)
    with pytest.raises(InputFileError):
        lightgcn_txt.load(tmp_path / "missing.txt")


def test_bench_command(tiny, tmp_path, capsys) -> None:
    out = tmp_path / "r.json"
    train, test = tiny
    code = main(
        [
            "bench",
            "lightgcn",
            "--train",
            str(train),
            "--test",
            str(test),
            "--model",
            "mf",
            "--epochs",
            "2",
            "--threads",
            "1",
            "--no-progress",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "recall@20" in text and "ndcg@20" in text and "precision@20" in text
    result = json.loads(out.read_text())
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(h["seconds"] > 0 and h["eval_seconds"] > 0 for h in result["history"])
    assert result["settings"]["layers"] == 0 and result["data"]["n_test"] == 3
    # train/test only: the curve is on test, for the report; no epoch was chosen from it
    assert result["selected_by"] == "none: fixed epochs" and result["best_epoch"] == 2


def _as_txt(m, path) -> None:
    path.write_text("".join(f"{u} {' '.join(map(str, m[u].indices))}\n" for u in range(m.shape[0])))


def test_the_benchmark_test_curve_reports_and_selects_nothing(tmp_path) -> None:
    """A per-epoch test curve (the LightGCN papers' protocol) leaves training untouched: the kept
    model is the last epoch's, the same as with one evaluation at the end."""
    from engine.models import benchmark
    from tests.test_models_known import planted

    data = planted()
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    _as_txt(data.train, train)
    _as_txt(data.test, test)
    fast = {"epochs": 4, "lr": 0.01, "dim": 8, "batch_size": 128, "num_threads": 1}
    fast |= {"progress": False}
    every = benchmark.run(train, test, "lightgcn", {**fast, "layers": 2})
    once = benchmark.run(train, test, "lightgcn", {**fast, "layers": 2, "eval_every": 4})
    assert [h["epoch"] for h in every["history"]] == [1, 2, 3, 4]
    assert [h["epoch"] for h in once["history"]] == [4]
    curve = [h["ndcg@20"] for h in every["history"]]
    assert len(set(curve)) > 1  # a real curve, not one model scored four times
    for key in ("recall@20", "ndcg@20", "loss"):
        assert every["final"][key] == pytest.approx(once["final"][key], abs=1e-6)
    assert every["selected_by"] == once["selected_by"] == "none: fixed epochs"
    assert every["best_epoch"] == 4


def test_bench_command_training_free(tiny, capsys) -> None:
    train, test = tiny
    assert (
        main(
            [
                "bench",
                "lightgcn",
                "--train",
                str(train),
                "--test",
                str(test),
                "--model",
                "gfcf",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "gfcf:" in capsys.readouterr().out


@pytest.mark.realdata
def test_gowalla_counts() -> None:
    path = SHARED_DATA / "gowalla"
    if not (path / "train.txt").exists():
        pytest.skip(f"Gowalla not found at {path}")
    data = lightgcn_txt.load(path / "train.txt", path / "test.txt")
    assert (data.n_users, data.n_items) == (29858, 40981)
    assert (data.train.nnz, data.test.nnz) == (810128, 217242)
    assert data.train.multiply(data.test).nnz == 0  # the published split has no overlap
