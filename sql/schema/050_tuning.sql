-- Hyperparameter tuning (issue 11: `bookrec tune`, Optuna on the validation part, never test).
-- One row per study: a model's search on one split for one metric. A later `bookrec tune` of the
-- same model, split, metric and search space continues the study (same tune_id); `--new` starts
-- another. `bookrec train --model M --tuned` uses best_params of M's latest study on the split.
CREATE TABLE tuning_runs (
    tune_id     VARCHAR PRIMARY KEY,
    model       VARCHAR NOT NULL,
    split_id    VARCHAR NOT NULL,
    metric      VARCHAR NOT NULL,          -- e.g. recall@20, measured on the split's valid part
    space       JSON NOT NULL,             -- the model's search space, as declared
    space_hash  VARCHAR NOT NULL,
    sampler     VARCHAR NOT NULL,          -- 'tpe' (seeded)
    seed        INTEGER NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    n_trials    INTEGER NOT NULL DEFAULT 0, -- trials stored (complete, pruned and failed)
    best_trial  INTEGER,
    best_value  DOUBLE,
    best_params JSON,                      -- settings overrides of the best trial
    importance  JSON,                      -- parameter -> fANOVA importance (sums to 1)
    seconds     DOUBLE NOT NULL DEFAULT 0  -- time spent in trials, all sessions together
);

-- One row per trial: state 'complete' | 'pruned' | 'fail'; value on valid (NULL unless complete).
CREATE TABLE tuning_trials (
    tune_id      VARCHAR NOT NULL,
    number       INTEGER NOT NULL,
    state        VARCHAR NOT NULL,
    value        DOUBLE,
    params       JSON NOT NULL,
    best_epoch   INTEGER,
    intermediate JSON,                     -- epoch -> validation value (epoch-based models)
    seconds      DOUBLE NOT NULL,
    finished_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (tune_id, number)
);
