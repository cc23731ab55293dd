"""State and checkpoint files: loaded without running code, every model round-trips, old files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.config import as_dict
from engine.errors import BookrecError
from engine.evaluate import leaderboard
from engine.models import build, from_state, registered, split, stage
from engine.models.data import to_dataset
from engine.models.trainer import checkpoint_path
from tests.test_models_known import MODELS, planted


class Exploit:
    """Unpickling this runs `exec`: what a crafted .pt file in a stored state_path could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _fast(name: str) -> dict:
    s = dict(MODELS.get(name, {}))
    return {**s, "epochs": 2} if "epochs" in s else s


def test_a_crafted_state_file_is_refused_and_runs_nothing(planted_db, tmp_path, capsys) -> None:
    con, path = planted_db
    run = stage.train(con, "popularity", {}, db_path=path).record
    marker = tmp_path / "ran.txt"
    state = {"model": "popularity", "settings": {"by": "count"}, "item_scores": Exploit(marker)}
    torch.save(state, run.state_path)  # a file swapped in at the path model_runs points to
    with pytest.raises(BookrecError, match="refused"):
        leaderboard.evaluate(con)
    assert not marker.exists()
    con.close()
    assert main(["evaluate", "--db", str(path)]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "refused" in err
    assert not marker.exists()


def test_a_crafted_training_checkpoint_is_refused_on_resume(tmp_path) -> None:
    data = planted()
    settings = {**MODELS["mf"], "epochs": 1, "checkpoint_dir": str(tmp_path), "resume": True}
    model = build("mf", settings)
    marker = tmp_path / "ran.txt"
    path = checkpoint_path(model, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": "mf", "progress": Exploit(marker)}, path)
    with pytest.raises(BookrecError, match="refused"):
        model.fit(data)
    assert not marker.exists()


@pytest.mark.parametrize("name", registered())
def test_every_model_state_round_trips_through_a_safe_file(name: str, tmp_path) -> None:
    data = planted()
    model = build(name, _fast(name))
    model.fit(data)
    path = stage._save_state(model, f"{name}-run", stage.EvalSettings(models_dir=tmp_path), None)
    # torch's restricted unpickler with nothing allow-listed: only tensors and plain values inside
    again = from_state(torch.load(path, map_location="cpu", weights_only=True))
    users = torch.arange(data.n_users)
    assert torch.allclose(again.score(users), model.score(users), atol=1e-5)
    scorer = leaderboard._scorer(None, {"state_path": path, "scoring": "topn"}, None)
    assert torch.allclose(scorer.score(users), model.score(users), atol=1e-5)


def test_an_old_state_with_numpy_arrays_asks_for_a_retrain(planted_db) -> None:
    con, path = planted_db
    settings = {"num_threads": 1, "svd_k": 8}
    run = stage.train(con, "gfcf", settings, db_path=path).record
    model = build("gfcf", settings)
    model.fit(to_dataset(split.rows(con, run.split_id))[0])
    r = model.parts["train"]
    old = {  # what engine/models/gfcf.py wrote before states held tensors only
        "model": "gfcf",
        "settings": as_dict(model.settings),
        "shape": r.shape,
        "indptr": r.indptr,
        "indices": r.indices,
        "vt": model.parts["vt"],
    }
    torch.save(old, run.state_path)
    with pytest.raises(BookrecError, match="older format") as err:
        leaderboard.evaluate(con)
    assert "bookrec train --model gfcf --force" in str(err.value)


def test_an_old_lightgcn_state_still_loads(tmp_path) -> None:
    data = planted()
    model = build("lightgcn", _fast("lightgcn"))
    model.fit(data)
    old = {  # the format written before (already tensors and plain values only)
        "model": "lightgcn",
        "settings": model.state()["settings"],
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_extra": 0,
        "ego": model.module.embedding.weight.detach().clone(),
        "users": torch.from_numpy(model.user_embeddings()),
        "items": torch.from_numpy(model.item_embeddings()),
    }
    path = tmp_path / "old.pt"
    torch.save(old, path)
    scorer = leaderboard._scorer(None, {"state_path": str(path), "scoring": "embedding"}, None)
    users = torch.arange(data.n_users)
    assert torch.allclose(scorer.score(users), model.score(users))


def test_a_state_that_could_not_be_loaded_safely_is_not_written(tmp_path) -> None:
    from engine.models import checkpoint

    path = tmp_path / "s.pt"
    with pytest.raises(TypeError, match=r"state\['parts'\]\['vt'\] is a numpy.ndarray"):
        checkpoint.save({"parts": {"vt": np.zeros(3)}}, path)
    with pytest.raises(TypeError, match="Exploit"):
        checkpoint.save({"x": [1, Exploit(tmp_path / "never")]}, path)
    assert not path.exists() and not list(tmp_path.iterdir())
    m = planted().train
    back = checkpoint.unpack_csr(checkpoint.load(checkpoint.save(checkpoint.pack_csr(m), path)))
    assert (back != m).nnz == 0 and back.dtype == m.dtype
