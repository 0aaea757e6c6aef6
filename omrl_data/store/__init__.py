"""The native store: where datasets live and how a version is written, checked and read.

- ``catalog``: the root, ids ``omrl/<family>/<name>-v<N>``, versions, resolve, list, info, delete.
- ``writer``: ``StagedDataset``, a version being written: staged, locked, resumable, committed
  in one atomic step.
- ``lock``: the exclusive writer lock (pid, host, start time, command; survives kill -9).
- ``manifest``: sha256 of every file, written last; ``verify`` names the task and array at fault.
- ``zarr_io``: the per-task zarr groups (atomic per group).

Loading (the contiguous cache) lives in ``omrl_data.dataset``.
"""
