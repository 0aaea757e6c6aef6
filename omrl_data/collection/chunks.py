"""A SAC learner's progress, committed chunk by chunk so that a kill loses at most one chunk.

A learner (one shard of tasks in ``shared`` mode, one task in ``per-task`` mode) writes its
progress under the staging folder's scratch space, ``work/learner_<first task>_<tasks>/``::

    learner.json            which tasks and which data settings the folder belongs to
    chunk_000001/           one committed chunk (renamed into place once every file is on disk)
        task_0003.npz       the task's rows recorded since the previous chunk (``stream__*``) and
                            its checkpoint rollouts of that span (``rollout_<step>__*``)
        replay.npz          the rows added to the learner's replay buffer since the previous chunk
        state.json          counters, RNG states, each env's episode in progress (not in a final chunk)
        state.npz           the arrays of that state (last observations, episode actions, RNGs)
        learner.pt          networks, optimisers and the torch RNG (read with ``weights_only=True``)
        chunk.json          number, vector steps done, whether the learner had finished (written last)
    chunk_000002/ ...
    policies/task_0003/     checkpoint policies saved so far (moved into the dataset at the end)

A chunk is committed with one rename after its files are fsynced, so after a kill -9 at any
moment every ``chunk_*`` folder is whole; ``.tmp-chunk_*`` folders are unfinished and deleted.
A resume reads the rows of every chunk and the state of the last one. Once a chunk is committed
the learner state of the one before it is deleted, and so are replay rows that the buffer has
overwritten since, so the folder holds at most the stream, the live buffer and one state.

Nothing here is unpickled: arrays are ``.npz`` read with ``allow_pickle=False``, the torch file
with ``weights_only=True``, the rest JSON.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from omrl_data.store import manifest, zarr_io

LEARNER_META = "learner.json"
CHUNK_META = "chunk.json"
STATE_JSON = "state.json"
STATE_ARRAYS = "state.npz"
LEARNER_FILE = "learner.pt"
REPLAY_FILE = "replay.npz"
CHUNK_VERSION = 1
_CHUNK_RE = re.compile(r"^chunk_(\d{6})$")


class ChunkError(Exception):
    """A work folder that cannot be continued (damaged, or written by other settings)."""


def learner_folder(work_dir: Path, task_indices: list[int]) -> Path:
    return Path(work_dir) / f"learner_{int(task_indices[0]):04d}_{len(task_indices)}"


def _task_file(index: int) -> str:
    return f"task_{int(index):04d}.npz"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Chunks:
    """The committed chunks of one learner, on disk (``folder``) or, without one, in memory (a
    run nobody will resume, e.g. the calibration). ``tasks``: the learner's task indices;
    ``settings``: the data settings it was started with (a folder of other settings is not
    continued)."""

    def __init__(self, folder: Path | None, tasks: list[int], settings: dict[str, Any]):
        self.folder = None if folder is None else Path(folder)
        self.tasks = [int(i) for i in tasks]
        self.settings = settings
        self._memory: list[dict[str, Any]] = []  # in-memory chunks (no folder)
        self._infos: dict[int, dict[str, Any]] = {}  # chunk.json of the chunks read or written
        self.count = 0
        if self.folder is not None:
            self._open()

    # -------------------------------------------------------------------------------- opening
    def _open(self) -> None:
        meta_path = self.folder / LEARNER_META
        want = {"chunk_version": CHUNK_VERSION, "tasks": self.tasks, "settings": self.settings}
        if self.folder.is_dir():
            for p in self.folder.glob(".tmp-*"):  # a chunk a kill interrupted before its rename
                shutil.rmtree(p, ignore_errors=True)
            try:
                found = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                found = None
            if found != want:
                shutil.rmtree(self.folder)
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            manifest.write_json_atomic(meta_path, want)
            manifest.fsync_dir(self.folder.parent)
        numbers = sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _CHUNK_RE.match(p.name)))
        if numbers != list(range(1, len(numbers) + 1)):
            raise ChunkError(f"chunks {numbers} are not numbered 1..{len(numbers)}")
        self.count = len(numbers)

    def policy_dir(self, index: int) -> Path | None:
        """Where the learner saves task ``index``'s checkpoint policies until the task is written."""
        return None if self.folder is None else self.folder / "policies" / f"task_{int(index):04d}"

    def chunk_dir(self, k: int) -> Path:
        return self.folder / f"chunk_{k:06d}"

    # -------------------------------------------------------------------------------- reading
    def info(self, k: int) -> dict[str, Any]:
        if self.folder is None:
            return self._memory[k - 1]["info"]
        if k not in self._infos:
            try:
                info = json.loads((self.chunk_dir(k) / CHUNK_META).read_text())
            except (OSError, ValueError) as e:
                raise ChunkError(f"chunk {k}: {e}") from None
            if not isinstance(info, dict) or info.get("chunk") != k:
                raise ChunkError(f"chunk {k}: unexpected {CHUNK_META}")
            self._infos[k] = info
        return self._infos[k]

    def last(self) -> dict[str, Any] | None:
        """``chunk.json`` of the last committed chunk, or None."""
        return self.info(self.count) if self.count else None

    def _task_arrays(self, k: int, index: int) -> dict[str, np.ndarray]:
        if self.folder is None:
            return self._memory[k - 1]["tasks"][index]
        try:
            with np.load(self.chunk_dir(k) / _task_file(index), allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise ChunkError(f"chunk {k}, task {index}: {e}") from None

    def stream(self, index: int) -> dict[str, np.ndarray]:
        """Task ``index``'s rows over every committed chunk, in order (``TransitionRecorder`` fields)."""
        parts: dict[str, list[np.ndarray]] = {}
        for k in range(1, self.count + 1):
            arrays = self._task_arrays(k, index)
            for name, v in arrays.items():
                if name.startswith("stream__"):
                    parts.setdefault(name[len("stream__"):], []).append(v)
        return {name: np.concatenate(v) for name, v in parts.items()}

    def rollouts(self, index: int) -> list[tuple[int, dict[str, np.ndarray]]]:
        """Task ``index``'s checkpoint rollouts ``(step, rows)`` over every chunk, by step."""
        out: dict[int, dict[str, np.ndarray]] = {}
        for k in range(1, self.count + 1):
            for name, v in self._task_arrays(k, index).items():
                if name.startswith("rollout_"):
                    step, _, field = name[len("rollout_"):].partition("__")
                    out.setdefault(int(step), {})[field] = v
        return sorted(out.items())

    def replay_slices(self):
        """``(first row, arrays)`` of each chunk's replay rows still on disk, in order."""
        for k in range(1, self.count + 1):
            if self.folder is None:
                replay = self._memory[k - 1].get("replay")
                if replay is not None:
                    yield replay
                continue
            path = self.chunk_dir(k) / REPLAY_FILE
            if not path.exists():
                continue
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {name: z[name] for name in z.files}
            except (OSError, ValueError) as e:
                raise ChunkError(f"chunk {k}, replay rows: {e}") from None
            yield int(arrays.pop("__first_row")), arrays

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """``(state.json, state.npz arrays, learner.pt)`` of the last chunk (ChunkError if absent)."""
        import torch

        k = self.count
        folder = self.chunk_dir(k)
        try:
            state = json.loads((folder / STATE_JSON).read_text())
            with np.load(folder / STATE_ARRAYS, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            learner = torch.load(folder / LEARNER_FILE, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable part means "cannot continue"
            raise ChunkError(f"chunk {k}: unreadable learner state ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if not isinstance(state, dict) or not isinstance(learner, dict):
            raise ChunkError(f"chunk {k}: unexpected learner state")
        return state, arrays, learner

    # -------------------------------------------------------------------------------- writing
    def commit(
        self,
        done: int,
        streams: dict[int, dict[str, np.ndarray]],
        rollouts: dict[int, list[tuple[int, dict[str, np.ndarray]]]],
        replay: tuple[int, dict[str, np.ndarray]] | None = None,
        state: tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]] | None = None,
        final: bool = False,
        keep_replay_from: int = 0,
    ) -> None:
        """Commit chunk ``count + 1``: every task's new rows and rollouts, the new replay rows
        ``(first row, arrays)``, the learner state (``(json, arrays, torch dict)``; None in a
        final chunk). Replay rows of earlier chunks that end at or before ``keep_replay_from``
        (overwritten in the buffer) are deleted afterwards, and so is the previous state."""
        k = self.count + 1
        info = {"chunk": k, "done": int(done), "final": bool(final), "tasks": self.tasks}
        if self.folder is None:
            self._memory.append({"info": info, "replay": replay, "tasks": {
                i: _task_payload(streams[i], rollouts.get(i, [])) for i in self.tasks}})
            self.count = k
            return
        tmp = self.folder / f".tmp-chunk_{k:06d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for i in self.tasks:
                np.savez(tmp / _task_file(i), **_task_payload(streams[i], rollouts.get(i, [])))
            if replay is not None:
                first, arrays = replay
                np.savez(tmp / REPLAY_FILE, __first_row=np.int64(first), **arrays)
                info["replay_rows"] = [int(first), int(first) + len(next(iter(arrays.values())))]
            if state is not None:
                import torch

                meta, arrays, learner = state
                (tmp / STATE_JSON).write_text(json.dumps(meta, default=_plain))
                np.savez(tmp / STATE_ARRAYS, **arrays)
                # Serialised in memory, then written as plain bytes: a full disk is an OSError
                # (ENOSPC, one line for the user), not one of torch's RuntimeErrors.
                data = io.BytesIO()
                torch.save(learner, data)
                (tmp / LEARNER_FILE).write_bytes(data.getbuffer())
            (tmp / CHUNK_META).write_text(json.dumps(info))
            for p in tmp.iterdir():
                _fsync_file(p)
            self._fsync_policies()
            manifest.fsync_dir(tmp)
            zarr_io.check_write_guard()  # an orphaned worker (its driver killed) must not commit
            os.rename(tmp, self.chunk_dir(k))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        manifest.fsync_dir(self.folder)
        self.count = k
        self._infos[k] = info
        # What a resume no longer needs: the previous state, replay rows the buffer overwrote.
        if k > 1:
            for name in (STATE_JSON, STATE_ARRAYS, LEARNER_FILE):
                (self.chunk_dir(k - 1) / name).unlink(missing_ok=True)
        for j in range(1, k):
            try:
                info_j = self.info(j)
            except ChunkError:
                continue
            rows = info_j.get("replay_rows")
            if rows and rows[1] <= keep_replay_from and not info_j.get("replay_dropped"):
                (self.chunk_dir(j) / REPLAY_FILE).unlink(missing_ok=True)
                info_j["replay_dropped"] = True  # (in memory only: a resume finds the file gone)

    def _fsync_policies(self) -> None:
        folder = self.folder / "policies"
        if folder.is_dir():
            for dirpath, _, files in os.walk(folder):
                for f in files:
                    _fsync_file(Path(dirpath) / f)

    def remove(self) -> None:
        """Delete the folder (the learner's tasks are written)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._memory.clear()
        self._infos.clear()
        self.count = 0

    def reset(self) -> None:
        """Start over: every chunk is deleted (a state that cannot be continued)."""
        self._infos.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._open()
        else:
            self._memory.clear()
            self.count = 0


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON")


def _task_payload(stream: dict[str, np.ndarray], rollouts: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    out = {f"stream__{name}": v for name, v in stream.items()}
    for step, rows in rollouts:
        out.update({f"rollout_{int(step):08d}__{name}": v for name, v in rows.items()})
    return out


def saved_steps(work_dir: Path) -> list[int]:
    """The env steps per task each learner under ``work_dir`` has committed (for messages)."""
    out = []
    for folder in sorted(Path(work_dir).glob("learner_*")):
        numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _CHUNK_RE.match(p.name))] if folder.is_dir() else []
        if numbers:
            try:
                out.append(int(json.loads((folder / f"chunk_{max(numbers):06d}" / CHUNK_META).read_text())["done"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return out


# ------------------------------------------------------------------------------------------------
# RNG states as JSON (no pickle)
# ------------------------------------------------------------------------------------------------
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A numpy Generator in the state ``gen.bit_generator.state`` had (known bit generators only)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ChunkError(f"unknown bit generator {name!r}")
    bit = getattr(np.random, name)()
    bit.state = state
    return np.random.Generator(bit)


def legacy_state_to_json(state: tuple) -> tuple[dict[str, Any], np.ndarray]:
    """``np.random.get_state()`` as (JSON part, key array)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}, np.asarray(keys)


def legacy_state_from_json(meta: dict[str, Any], keys: np.ndarray) -> tuple:
    return (meta["name"], np.asarray(keys, dtype=np.uint32), int(meta["pos"]), int(meta["has_gauss"]), float(meta["cached_gaussian"]))
