"""`fit(cfg, run_dir)`: train a model into its run folder, new or resumed, on one process or
under torchrun.
"""

from __future__ import annotations

from pathlib import Path

from unetkit import config as config_mod
from unetkit.core.files import remove_temp_files, write_text
from unetkit.runs.folder import RunError
from unetkit.training.checkpoints import has_checkpoint, keep_last_only
from unetkit.training.checks import check_training
from unetkit.training.distributed import Context
from unetkit.training.trainer import Trainer, pick_device


def default_run_dir(cfg) -> Path:
    base = Path("runs") / cfg.name
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    return path


def undo_start(run_dir: Path, remove_folder: bool) -> None:
    """Remove what a new run wrote before its start failed: config.yaml and folders left empty
    (and the folder itself when this run made it). Anything else is left as it is."""
    (run_dir / "config.yaml").unlink(missing_ok=True)
    for folder in sorted((p for p in run_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if remove_folder and not any(run_dir.iterdir()):
        run_dir.rmdir()


def fit(cfg, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        log=print) -> dict:
    """Train `cfg` into `run_dir` (a new folder unless `resume`); returns the best scores."""
    check_training(cfg)  # augmentation ops, loggers' packages, model size: before anything
    ctx = Context.from_env(pick_device(cfg.train.device), cfg.train.sync_batchnorm)
    trainer = None
    try:
        if not ctx.is_main:  # one log and one progress bar for the whole world
            log, progress = (lambda *a, **k: None), False
        run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        if ctx.is_main:  # what a killed save left behind is never part of a run
            remove_temp_files(run_dir)
        if not resume and run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir} already holds a run; continue it with --resume, or "
                           "choose another --out")
        ctx.barrier()  # every rank has looked before rank 0 writes anything
        new_folder = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        if ctx.is_main and not resume:  # first, so a run killed while loading data can resume
            write_text(run_dir / "config.yaml", config_mod.to_yaml(cfg))
        try:
            trainer = Trainer(cfg, run_dir, progress, log, ctx)
        except Exception:  # a start that failed (data, model): no run, the corrected command runs
            if ctx.is_main and not resume:
                undo_start(run_dir, new_folder)
            raise
        if resume and not has_checkpoint(run_dir / "checkpoints"):
            log(f"{run_dir} stopped before its first checkpoint: training it from the start")
        elif resume:
            trainer.load_checkpoint(run_dir / "checkpoints")
            log(f"resuming {run_dir} after epoch {trainer.epoch} (best val "
                f"{cfg.train.monitor} {trainer.best:.4f})")
        if ctx.active:
            log(f"distributed: {ctx.world_size} processes, {trainer.batch_size // ctx.world_size}"
                f" images each per step (global batch {trainer.batch_size})")
        result = trainer.fit()
        if ctx.is_main:  # finished: one checkpoint is enough to resume with more epochs
            keep_last_only(run_dir / "checkpoints")
        # Rank 0 still writes the last files while the others are done. A rank that tears its
        # connections down while a peer still runs can abort at exit (gloo, seen on the CPU), so
        # every rank waits here and all leave together.
        ctx.barrier()
        return result
    finally:
        if trainer is not None:
            trainer.loggers.close("FAILED")  # after an error; nothing after a finished run
        ctx.close()
