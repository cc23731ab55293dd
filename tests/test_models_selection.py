"""Selection on validation: every run records its validation metrics, the best one is the default."""

from __future__ import annotations

import json

from engine import db
from engine.models import stage


def test_runs_record_validation_metrics_and_the_best_is_the_default(planted_db, capsys):
    from engine.cli import main

    con, path = planted_db
    pop = stage.train(con, "popularity", {}, db_path=path).record
    cf = stage.train(con, "gfcf", {}, db_path=path).record
    for run in (pop, cf):
        assert 0 <= run.metrics["valid_recall@20"] <= 1 and "valid_ndcg@20" in run.metrics
        assert "recall@20" in run.metrics  # test metrics stay as they were
    # the planted blocks: a CF model beats popularity on valid, so it is the default
    assert cf.metrics["valid_recall@20"] > pop.metrics["valid_recall@20"]
    got = db.fetch(con, "SELECT model, metrics::VARCHAR AS m FROM default_model_run").row(0)
    assert got[0] == "gfcf"
    assert json.loads(got[1])["valid_recall@20"] == cf.metrics["valid_recall@20"]
    con.close()
    assert main(["recommend", "--user", "1000", "--db", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "default model gfcf: best recall@20 on the validation part" in out
    assert f"({cf.metrics['valid_recall@20']:.4f}) of the 2 current models" in out


def test_final_refits_on_everything_and_keeps_the_split_runs_figures(planted_db):
    from engine.evaluate import leaderboard
    from engine.models import checkpoint, final, runs, split
    from engine.models.base import from_state

    con, path = planted_db
    done = final.train_final(con, "popularity", {}, db_path=path)
    chosen, served = done.selection.record, done.record
    assert served.params["protocol"] == "final" and served.params["metrics_from"] == chosen.run_id
    assert runs.current_run(con, "popularity").run_id == served.run_id
    # its figures are the split run's (test) plus the train+valid refit judged on test
    assert served.metrics["recall@20"] == chosen.metrics["recall@20"]
    assert served.metrics["valid_recall@20"] == chosen.metrics["valid_recall@20"]
    assert 0 <= served.metrics["refit_recall@20"] <= 1
    # trained on every interaction of the split: popularity counts train + valid + test
    info = split.current(con)
    n_all = split.rows(con, info.split_id).height
    model = from_state(checkpoint.load(served.state_path, hint=""))
    assert float(model.item_scores.sum()) == n_all
    # the leaderboard never re-evaluates it on the data it was trained on
    entry = next(e for e in leaderboard.evaluate(con) if e.model == "popularity")
    assert (
        entry.status.startswith("final")
        and entry.metrics["recall@20"] == chosen.metrics["recall@20"]
    )
    # a second call with the same settings does nothing
    assert final.train_final(con, "popularity", {}, db_path=path).skipped


def test_final_fixes_the_epoch_chosen_on_valid(planted_db):
    from engine.models import final

    con, path = planted_db
    done = final.train_final(
        con, "mf", {"epochs": 6, "eval_every": 1, "patience": 0, "dim": 8}, db_path=path
    )
    best = done.selection.record.params["best_epoch"]
    assert done.selection.record.params["selected_by"] == "valid"
    assert 1 <= best <= 6
    assert done.record.params["model"]["epochs"] == best
    assert len(done.record.history) == best  # fixed epochs, nothing left to select on


def test_train_best_final_refits_the_validation_winner_as_it_was_trained(planted_db, capsys):
    from engine.cli import main
    from engine.models import runs

    con, path = planted_db
    stage.train(con, "popularity", {}, db_path=path)
    stage.train(con, "gfcf", {"alpha": 0.1}, db_path=path)  # the winner, not at its defaults
    con.close()
    assert main(["train", "--model", "best", "--db", str(path)]) == 2  # needs --final
    assert "needs --final" in capsys.readouterr().err
    assert main(["train", "--model", "best", "--final", "--db", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "gfcf: split run" in out and "now current (serves recommendations)" in out
    con = db.connect(path)
    run = runs.current_run(con, "gfcf")
    assert run.params["protocol"] == "final" and run.params["model"]["alpha"] == 0.1
    assert runs.current_run(con, "popularity").params.get("protocol") is None
    con.close()
    assert main(["train", "--model", "best", "--final", "--db", str(path)]) == 0
    assert "is up to date" in capsys.readouterr().out
