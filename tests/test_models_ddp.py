"""Data-parallel training (engine/models/ddp.py): 2 gloo processes train what one process trains.

Each rank draws the same epoch sample (same seed) and trains on its half of every global batch;
DDP averages the gradients of the share-weighted losses, which is the global batch's gradient.
Only the order of floating-point sums differs, so the loss curves agree to a relative 1e-5
(measured: about 1e-7) and the chosen epochs and validation metrics are the same.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from engine import db
from engine.cli import main
from engine.models import build, ddp
from tests.conftest import REPO
from tests.test_models_known import planted
from tests.test_models_trainer import FAST, with_valid

LOSS_RTOL = 1e-5  # relative tolerance between the 1-process and 2-process loss curves

# --model, settings: every sampled model, with early stopping on valid
CASES = {
    "lightgcn": {**FAST, "layers": 2, "epochs": 6, "eval_every": 2, "patience": 1},
    "mf": {**FAST, "item_bias": True, "epochs": 4, "eval_every": 2, "patience": 0},
    "ncf": {**FAST, "epochs": 6, "eval_every": 2, "patience": 1, "batch_size": 96},
}


def _fits(data) -> dict:
    out = {}
    for name, settings in CASES.items():
        model = build(name, settings)
        out[name] = (model, model.fit(data))
    return out


def test_two_gloo_processes_train_the_one_process_curve() -> None:
    data = with_valid(planted())
    assert data.train.nnz % 128 and data.train.nnz % 96  # a short last batch is split too
    one = _fits(data)
    with ddp.session(2, "cpu") as hooks:  # one session, a job per model
        assert hooks.world_size == 2 and hooks.is_main
        two = _fits(data)
    users = torch.arange(data.n_users)
    for name in CASES:
        (m1, f1), (m2, f2) = one[name], two[name]
        assert [h["epoch"] for h in f2.history] == [h["epoch"] for h in f1.history], name
        assert [h["loss"] for h in f2.history] == pytest.approx(
            [h["loss"] for h in f1.history], rel=LOSS_RTOL
        ), name
        assert f2.best_epoch == f1.best_epoch and f2.selected_by == "valid"
        assert [h.get("metrics") for h in f2.history] == [h.get("metrics") for h in f1.history]
        assert torch.allclose(m2.score(users), m1.score(users), atol=1e-3), name
    assert torch.get_num_threads() == 1  # FAST's one thread, restored after each job


def _losses(con, run_id: str) -> list[float]:
    rows = db.fetch(
        con,
        "SELECT value FROM run_metrics WHERE run_id = $run AND metric = 'loss' ORDER BY epoch",
        {"run": run_id},
    )
    return rows["value"].to_list()


def test_train_nproc_writes_one_run_from_rank_0(planted_db, capsys) -> None:
    con, path = planted_db
    con.close()
    args = ["train", "--db", str(path), "--model", "mf", "--epochs", "3", "--batch-size", "128"]
    assert main([*args, "--nproc", "2"]) == 0
    assert "now current" in capsys.readouterr().out
    con = db.connect(path, read_only=True)
    runs = db.fetch(con, "SELECT run_id FROM model_runs")["run_id"].to_list()
    assert len(runs) == 1  # only rank 0 wrote
    distributed = _losses(con, runs[0])
    con.close()
    assert main([*args, "--force"]) == 0  # the same run on one process
    con = db.connect(path, read_only=True)
    single = db.fetch(con, "SELECT run_id FROM model_runs WHERE run_id <> $run", {"run": runs[0]})
    assert len(distributed) == 3
    assert distributed == pytest.approx(_losses(con, single["run_id"][0]), rel=LOSS_RTOL)
    con.close()


def test_torchrun_main_trains_and_writes_one_run(planted_db) -> None:
    con, path = planted_db
    con.close()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "engine.models.ddp", "--db", str(path), "--model", "ncf", "--epochs", "2"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "now current" in out.stdout
    con = db.connect(path, read_only=True)
    assert db.fetch(con, "SELECT model FROM model_runs")["model"].to_list() == ["ncf"]
    con.close()


def test_nproc_with_an_unsupported_model_is_one_clear_line(planted_db, capsys) -> None:
    con, path = planted_db
    con.close()
    code = main(["train", "--db", str(path), "--model", "itemknn", "--nproc", "2"])
    err = capsys.readouterr().err
    assert code == 2  # ConfigError
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("bookrec: error: --nproc trains lightgcn, mf, ncf only, not 'itemknn'")
