"""Data-parallel training of the sampled models (lightgcn, mf, ncf) on several processes or GPUs.

Rank 0 is the process that runs the stage: it prepares the data (DuckDB, or LightGCN-format
files), and inside `trainer.fit` hands the model's settings and the Dataset to the other ranks
over the process group; those never open the DuckDB file. Every rank then runs the one training
loop of engine/models/trainer.py with `RankHooks`: the same seed, so the same epoch sample, of
which each rank trains on its rows of every global batch; gradients all-reduced by
DistributedDataParallel; only rank 0 evaluates on validation, writes checkpoints and returns to
the stage, which writes the one run record. Its early-stopping decision is broadcast.

Two ways in: `session(nproc)` (`bookrec train --nproc N`: this process is rank 0, the others are
spawned on a free localhost port) and `main()` (`torchrun -m engine.models.ddp --db PATH --model M
[train flags]`: ranks from RANK / WORLD_SIZE / LOCAL_RANK). Backend gloo on CPU, NCCL when the
model's device resolves to cuda (rank r then uses cuda:LOCAL_RANK).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine import config
from engine.errors import ConfigError
from engine.models import trainer
from engine.models.base import Dataset, model_class, settings_from_dict

SUPPORTED = ("lightgcn", "mf", "ncf")  # the models trained by engine.models.trainer
# Rank 0 may spend a while between collectives (preparing data, evaluating, writing a run).
TIMEOUT = timedelta(hours=2)
# What the other ranks never do: they neither checkpoint nor show progress.
_QUIET = {"checkpoint_dir": None, "resume": False, "progress": False}


def check_model(model_name: str) -> None:
    """ConfigError unless `model_name` is trained by the shared loop (so it can run on ranks)."""
    if model_name not in SUPPORTED:
        raise ConfigError(
            f"--nproc trains {', '.join(SUPPORTED)} only, not {model_name!r}",
            hint="Drop --nproc (other models fit in one process)",
        )


def active() -> bool:
    """Whether this process is a rank of a distributed session (`session` or `main`)."""
    return trainer.current_hooks().world_size > 1


def device_spec(model_name: str, device: str | None) -> str:
    """The device the model will be trained on: the flag, else its settings (TOML, environment)."""
    if device:
        return device
    settings = config.load_settings(model_class(model_name).settings_cls, model_name, {})
    return settings.device


def backend_for(device: str) -> str:
    """NCCL when `device` resolves to cuda, else gloo."""
    return "nccl" if trainer.resolve_device(device).type == "cuda" else "gloo"


class _Loss(nn.Module):
    """The model's batch loss as a module forward, so DDP sees (and all-reduces) its parameters."""

    def __init__(self, model: trainer.SampledModel):
        super().__init__()
        self.inner = model.module
        self._batch_loss = model.batch_loss

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        if len(users) == 0:  # a last batch smaller than the world: zero gradients, hooks still fire
            return sum(p.sum() for p in self.parameters()) * 0.0
        return self._batch_loss(users, pos, neg)


class RankHooks(trainer.Hooks):
    """trainer.Hooks for one rank of a torch.distributed process group."""

    def __init__(self, rank: int, world_size: int, local_rank: int, local_world_size: int):
        self.rank, self.world_size = rank, world_size
        self.local_rank, self.local_world_size = local_rank, local_world_size
        # Control messages (jobs, flags, loss sums) always go over gloo on the CPU.
        self.control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        self.failed = False
        self._ddp: DistributedDataParallel | None = None

    # -- messages
    def send(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled)."""
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def total(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return float(t[0])

    def agree(self, flag: bool) -> bool:
        return bool(self.send(bool(flag)))

    # -- one fit
    @contextlib.contextmanager
    def job(self, model: trainer.SampledModel, data: Dataset) -> Iterator[None]:
        if self.is_main:
            settings = {**config.as_dict(model.settings), **_QUIET}
            self.send({"model": model.name, "settings": settings, "data": data})
        threads = torch.get_num_threads()
        try:
            yield
        except BaseException:
            self.failed = True  # the others may be inside a collective: the session ends them
            raise
        finally:
            self._ddp = None
            torch.set_num_threads(threads)

    def threads(self, n: int) -> int:
        """0 (one per core) becomes this machine's cores // its ranks; an explicit n stays n."""
        return n if n > 0 else max(1, len(os.sched_getaffinity(0)) // self.local_world_size)

    def device(self, spec: str) -> torch.device:
        d = trainer.resolve_device(spec)
        backend = dist.get_backend()
        if (d.type == "cuda") != (backend == "nccl"):
            raise ConfigError(
                f"device {spec!r} does not fit the process group's {backend} backend",
                hint="Give the same --device to the launcher and the model",
            )
        if d.type == "cuda":
            d = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(d)
        return d

    def resumed(self, run, model, optimizer, rng, data):  # noqa: ANN001, ANN201 - trainer.Hooks
        state = trainer.training_state(model, optimizer, rng, run, data) if run.epoch else None
        state = self.send(state if self.is_main else None)
        if state is None or self.is_main:
            return run
        return trainer.restore_state(state, model, optimizer, rng)

    def wrap(self, model: trainer.SampledModel, device: torch.device):  # noqa: ANN201
        # Every parameter gets a gradient in every step (LightGCN's RowPropagation returns one
        # dense gradient for the whole embedding table), so no find_unused_parameters pass.
        self._ddp = DistributedDataParallel(
            _Loss(model),
            device_ids=[device.index] if device.type == "cuda" else None,
            forward_sync_buffers=False,  # NCF's feature buffers never change (synced at init)
            find_unused_parameters=False,
        )
        return self._ddp

    def share(self, start: int, stop: int) -> tuple[int, int]:
        n = stop - start
        return start + n * self.rank // self.world_size, start + n * (
            self.rank + 1
        ) // self.world_size


def _init(
    rank: int, world_size: int, local_rank: int, local_world_size: int, backend: str, url: str
) -> RankHooks:
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend, init_method=url, rank=rank, world_size=world_size, timeout=TIMEOUT
    )
    return RankHooks(rank, world_size, local_rank, local_world_size)


def serve(hooks: RankHooks) -> None:
    """A rank other than 0: train each job rank 0 sends, until it sends None."""
    with trainer.hooks_active(hooks):
        while (job := hooks.send(None)) is not None:
            cls = model_class(job["model"])
            model = cls(settings_from_dict(cls.settings_cls, job["settings"]))
            trainer.fit(model, job["data"])


def _shutdown() -> None:
    """Destroy the process group once nothing still holds its work: gloo's worker threads may
    keep async work whose tensors refer to Python objects, and freeing those during interpreter
    shutdown aborts the process ("terminate called without an active exception", seen about once
    in a few dozen torchrun runs)."""
    gc.collect()
    if dist.is_initialized():
        dist.destroy_process_group()


def _exit_now(code: int) -> NoReturn:
    """Leave a rank's process without interpreter shutdown (see `_shutdown`), output flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _worker(index: int, url: str, world_size: int, backend: str) -> None:
    """A spawned rank (index + 1); its process ends here, with no interpreter shutdown."""
    hooks = _init(index + 1, world_size, index + 1, world_size, backend, url)
    try:
        serve(hooks)
    finally:
        _shutdown()
    _exit_now(0)


def free_port() -> int:
    """A TCP port free on localhost now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def session(nproc: int, device: str = "auto") -> Iterator[RankHooks]:
    """Every trainer.fit inside the block trains on `nproc` local processes; this one is rank 0."""
    backend = backend_for(device)
    if backend == "nccl" and nproc > torch.cuda.device_count():
        raise ConfigError(
            f"--nproc {nproc} needs {nproc} GPUs, {torch.cuda.device_count()} found",
            hint="Use fewer processes or --device cpu",
        )
    url = f"tcp://127.0.0.1:{free_port()}"
    procs = mp.start_processes(
        _worker,
        args=(url, nproc, backend),
        nprocs=nproc - 1,
        join=False,
        start_method="spawn",
    )
    hooks = None
    try:
        hooks = _init(0, nproc, 0, nproc, backend, url)
        with trainer.hooks_active(hooks):
            yield hooks
    except BaseException:
        if hooks is not None:
            hooks.failed = True
        raise
    finally:
        _close(hooks, procs)


def _close(hooks: RankHooks | None, procs: mp.ProcessContext) -> None:
    if hooks is not None and not hooks.failed:
        hooks.send(None)  # the workers leave their loop
        procs.join()
    else:  # they may be waiting inside a collective that will never complete
        for p in procs.processes:
            if p.is_alive():
                p.terminate()
        for p in procs.processes:
            p.join(10)
    _shutdown()


def main(argv: list[str] | None = None) -> int:
    """`torchrun -m engine.models.ddp --db PATH --model M [bookrec train flags]`.

    Rank 0 runs `bookrec train` with those flags; the others only train what it sends them.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
    local_rank = int(env.get("LOCAL_RANK", 0))
    local_world_size = int(env.get("LOCAL_WORLD_SIZE", world_size))
    model_name, device = _flag(argv, "--model"), _flag(argv, "--device")
    backend = backend_for(device_spec(model_name, device) if model_name in SUPPORTED else "cpu")
    hooks = _init(rank, world_size, local_rank, local_world_size, backend, "env://")
    try:
        if rank != 0:
            serve(hooks)
            return 0
        from engine.cli import main as cli_main

        with trainer.hooks_active(hooks):
            code = cli_main(["train", *argv])
        if not hooks.failed:  # else the others may be inside a collective: torchrun stops them
            hooks.send(None)
        return code
    finally:
        _shutdown()


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv, else None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    _exit_now(main())
