"""Training checkpoints: atomic directories, a `latest` pointer, pruning, self-describing exports.

Layout under a stage folder::

    checkpoints/step_000050/state.pt            everything needed to resume (torch.save, weights_only-loadable)
    checkpoints/step_000050/dcp/ + trainer.json sharded runs ([run] fsdp): each process's own shards of
                                                student, critic, EMA and optimiser state, written with
                                                torch.distributed.checkpoint (resumable on any number of
                                                processes), plus the trainer's step, position and config
    checkpoints/step_000050/student.safetensors (and student_ema.safetensors): loadable by `sfpp generate --checkpoint`
    checkpoints/latest                          name of the newest complete checkpoint

A checkpoint is written into ``step_NNNNNN.tmp/``, every file is fsync'ed, the folder is renamed
into place and only then is ``latest`` replaced (write + fsync + rename). A process killed at
any point leaves either the previous or the new checkpoint complete and loadable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sfpp.checkpoints import save_student
from sfpp.errors import SfppError


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    def __init__(self, root: Path, keep: int = 3):
        self.root = Path(root)
        self.keep = keep

    def latest(self) -> Path | None:
        ptr = self.root / "latest"
        if not ptr.is_file():
            return None
        path = self.root / ptr.read_text().strip()
        return path if (path / "state.pt").is_file() or is_sharded_checkpoint(path) else None

    def save(self, step: int, state: dict[str, Any], exports: dict[str, tuple[dict, dict]]) -> Path:
        """Write checkpoint `step`. exports: file stem -> (state dict, config) saved as safetensors."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:06d}"
        final = self.root / name
        tmp = self.root / (name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        for stem, (sd, cfg) in exports.items():
            save_student(tmp / f"{stem}.safetensors", sd, cfg)  # fsyncs
        return self._publish(tmp, final)

    def _publish(self, tmp: Path, final: Path) -> Path:
        """Rename a complete ``step_N.tmp`` folder into place, point ``latest`` at it, prune old ones."""
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        ptr_tmp = self.root / "latest.tmp"
        with open(ptr_tmp, "w") as f:
            f.write(final.name)
            f.flush()
            os.fsync(f.fileno())
        os.replace(ptr_tmp, self.root / "latest")
        _fsync_dir(self.root)
        self._prune(final)
        return final

    def save_sharded(self, step: int, dcp_state: dict[str, Any], trainer: dict[str, Any], *, dist,
                     write_exports) -> Path:
        """Write a sharded checkpoint: every process its own shards (DCP), the main process the rest.

        ``write_exports(folder)`` is called on every process (gathering exports is a collective) and
        writes the student files into the checkpoint folder before it is published.
        """
        import warnings

        import torch.distributed.checkpoint as dcp

        name = f"step_{step:06d}"
        final, tmp = self.root / name, self.root / (name + ".tmp")
        if dist.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        dist.barrier()
        with warnings.catch_warnings():  # single process: DCP says so, which is what we want
            warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process")
            dcp.save(dcp_state, checkpoint_id=str(tmp / "dcp"))
        write_exports(tmp)
        dist.barrier()
        if dist.is_main:
            with open(tmp / "trainer.json", "w") as f:
                f.write(json.dumps(trainer) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._publish(tmp, final)
        dist.barrier()
        return final

    def _prune(self, newest: Path) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for p in done[: max(0, len(done) - self.keep)]:
            if p != newest:
                shutil.rmtree(p, ignore_errors=True)

    def load(self, path: Path | None = None) -> dict[str, Any]:
        path = path or self.latest()
        if path is None:
            raise SfppError(f"no checkpoint to resume from in {self.root}; start without --resume")
        if is_sharded_checkpoint(path):
            raise SfppError(f"checkpoint {path} is sharded; it resumes with [run] fsdp = true")
        try:
            return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # a foreign or damaged file
            raise SfppError(f"checkpoint {path} cannot be loaded ({type(e).__name__}); start a new --out") from None


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / "dcp" / ".metadata").is_file() and (path / "trainer.json").is_file()


def load_sharded(path: Path, dcp_state: dict[str, Any]) -> dict[str, Any]:
    """Fill `dcp_state` (this process's own shard layout, any number of processes) from a sharded
    checkpoint, and return its trainer record."""
    import warnings

    import torch.distributed.checkpoint as dcp

    try:
        trainer = json.loads((path / "trainer.json").read_text())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process")
            dcp.load(dcp_state, checkpoint_id=str(path / "dcp"))
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SfppError(f"sharded checkpoint {path} cannot be loaded ({first}); start a new --out") from None
    return trainer


def sharded_keys(path: Path) -> set[str]:
    """Top-level entries of a sharded checkpoint (e.g. whether it holds an EMA yet)."""
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(path / "dcp")).read_metadata()
    return {k.split(".", 1)[0] for k in meta.state_dict_metadata}


# ---------------------------------------------------------------------- the trainer's own state
def rng_state() -> dict[str, Any]:
    """Every global RNG a resume must restore, as tensors (weights_only-loadable)."""
    import random

    import numpy as np

    rng = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
           "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(rng["torch"])
    random.setstate((3, tuple(int(x) for x in rng["python"]), None))
    np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def check_resumable(st: dict[str, Any], *, stage: str, config: dict[str, Any], fsdp: bool, where: Path) -> None:
    """Refuse, with the fix named, to resume a checkpoint of another stage, settings or sharding."""
    from sfpp.config_io import to_dict
    from sfpp.train.config import LoraSection

    if st.get("format") != "sfpp-train-v1" or st.get("stage") != stage:
        raise SfppError(f"the checkpoint in {where} is not an sfpp {stage} checkpoint; start a new --out")
    saved = json.loads(st["config"])
    off = to_dict(LoraSection())  # checkpoints from before [lora] existed trained full weights
    for section in ("model", "rollout", "lora"):
        if saved.get(section, off if section == "lora" else None) != config.get(section):
            diff = [k for k in config[section] if saved.get(section, {}).get(k) != config[section][k]]
            raise SfppError(f"cannot resume: the checkpoint was trained with different [{section}] settings "
                            f"({', '.join(diff)}); restore them or use a new --out")
    if bool(st.get("fsdp", False)) != fsdp:
        raise SfppError(f"cannot resume: the checkpoint in {where} was written with [run] fsdp = "
                        f"{str(bool(st.get('fsdp', False))).lower()}; set it back or use a new --out")


EXPORTS = ("student.safetensors", "student_ema.safetensors", "student_lora.safetensors")


def export_hashes(stage_dir: Path) -> dict[str, str]:
    """SHA-256 of a finished stage's exported files (recorded in its ``done.json``)."""
    from sfpp.home import file_sha256

    return {name: file_sha256(stage_dir / name) for name in EXPORTS if (stage_dir / name).is_file()}


def verify_exports(stage_dir: Path) -> None:
    """A finished stage's exports are all there and are the files its ``done.json`` recorded."""
    try:
        done = json.loads((stage_dir / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SfppError(f"{stage_dir / 'done.json'} is unreadable; delete it to redo the stage's export "
                        "from its last checkpoint with --resume") from None
    want = done.get("exports") if isinstance(done, dict) else None
    fix = f"delete {stage_dir / 'done.json'} and rerun with --resume to export the stage again from its last checkpoint"
    if not (stage_dir / "student.safetensors").is_file():
        raise SfppError(f"{stage_dir / 'student.safetensors'} is missing; {fix}")
    if want is None:  # a done.json from before hashes were recorded: check the files are readable students
        from sfpp.checkpoints import read_checkpoint_config

        if not read_checkpoint_config(stage_dir / "student.safetensors"):
            raise SfppError(f"{stage_dir / 'student.safetensors'} is not a readable sfpp student; {fix}")
        return
    have = export_hashes(stage_dir)
    bad = [name for name, sha in want.items() if have.get(name) != sha]
    if bad:
        raise SfppError(f"{stage_dir}: {', '.join(bad)} differ from what the finished stage exported; {fix}")
