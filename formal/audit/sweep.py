"""Sweeps of independent runs: serial, or through dask.distributed; resumable from a JSONL file.

A sweep is a list of *run specs* (JSON-able dicts, each with a unique ``key``)
and a function ``spec -> result dict`` that depends on the spec only (seeded
RNGs, no shared state), so a Dask sweep returns exactly what a serial one
does.  With a results file, every finished run is appended as one JSON line
as soon as it completes and runs whose key is already in the file are not
run again; the returned list is in spec order either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from formal.errors import InputFileError, InvalidArgument

RunFn = Callable[[dict[str, Any]], dict[str, Any]]


def read_results(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The finished runs of a results file by key (an absent file: none)."""
    if path is None or not Path(path).exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # a line cut by an interrupted run: run it again
                continue
            raise InputFileError(f"{path}:{n}: not a JSON line") from None
        if not isinstance(rec, dict) or "key" not in rec:
            raise InputFileError(f"{path}:{n}: expected an object with a 'key'")
        out[str(rec["key"])] = rec
    return out


def _append(path: str | Path | None, rec: dict[str, Any]) -> None:
    if path is None:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(rec, sort_keys=True) + "\n")


def run_sweep(
    specs: Sequence[dict[str, Any]],
    fn: RunFn,
    *,
    mode: str = "serial",
    workers: int = 2,
    scheduler: str | None = None,
    processes: bool = True,
    results: str | Path | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``fn`` on every spec (``mode`` serial or dask); results in spec order.

    ``scheduler``: the address of an existing dask scheduler; otherwise a
    LocalCluster with ``workers`` workers (``processes=False``: threads).
    ``progress``: called with the number of runs finished so far.
    """
    keys = [str(s["key"]) for s in specs]
    if len(set(keys)) != len(keys):
        raise InvalidArgument("sweep: run keys must be unique")
    done = read_results(results)
    todo = [s for s in specs if str(s["key"]) not in done]
    finished = len(specs) - len(todo)
    if progress:
        progress(finished)
    if mode == "serial":
        for s in todo:
            rec = fn(s)
            done[str(s["key"])] = rec
            _append(results, rec)
            finished += 1
            if progress:
                progress(finished)
    elif mode == "dask":
        try:
            from dask.distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise InvalidArgument(
                "dask sweeps need dask.distributed: pip install 'formal[sweep]' (or use --serial)"
            ) from None
        if workers <= 0:
            raise InvalidArgument(f"expected --workers >= 1, got {workers}")
        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=":0",
                silence_logs=logging.CRITICAL,  # shutdown heartbeats; task errors still raise
            )
            client = Client(cluster)
        try:
            futures = client.map(fn, todo, pure=False) if todo else []
            for fut in as_completed(futures):
                rec = fut.result()
                done[str(rec["key"])] = rec
                _append(results, rec)
                finished += 1
                if progress:
                    progress(finished)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        raise InvalidArgument(f"expected sweep mode serial or dask, got {mode!r}")
    return [done[k] for k in keys]


__all__ = ["RunFn", "read_results", "run_sweep"]
