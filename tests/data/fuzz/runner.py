"""The fuzz test's child process: reads the files it is sent with the public readers.

Run by :class:`tests.data.fuzz.harness.Worker` as ``python runner.py IN_FD OUT_FD
HEADROOM_MIB``: it imports the readers (and the libraries they load lazily, torch included:
seconds) once, takes the warm-up list (every seed, with each of its readers), and forks a
worker. The worker reads the warm-up files (so later reads allocate nothing for first use),
caps its address space at its size then plus ``HEADROOM_MIB`` (``RLIMIT_AS``: an allocation
past it fails instead of taking the machine's memory), says it is ready, and answers one
request at a time: a file, a reader and a chunk size in; the outcome, the names of
non-finite float arrays returned, the peak memory of the read and its time out. When a
worker dies (a signal, an abort, or killed by the parent after a time-out), this process
says so (``{"died": exit code}``) and forks the next one, in milliseconds.

The peak of each read is the process's resident-set high-water mark (``VmHWM``, what
``ru_maxrss`` reports), reset before the read through ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import traceback
import warnings
from multiprocessing.connection import Connection
from typing import Any

import numpy as np


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    return max(_status("VmHWM"), 0) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _arrays(out: Any) -> dict[str, np.ndarray]:
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    if hasattr(out, "vertices"):  # a Mesh
        return {"vertices": np.asarray(out.vertices), "faces": np.asarray(out.faces)}
    return {}


class _SelfTestPanic(BaseException):
    """What lazrs's ``PanicException`` is: not an ``Exception``."""


def _self_test(probe: str) -> tuple[list[dict[str, np.ndarray]], int]:
    """Misbehaviours the harness must see (its own tests): no reader is called."""
    if probe == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if probe == "hang":
        time.sleep(3600)
    if probe == "panic":
        raise _SelfTestPanic("self-test panic")
    grown = np.ones(128 << 17)  # 128 MiB, touched
    return [{"x": grown[:1]}], 1


def _read(reader: str, path: str, chunk: int) -> tuple[list[dict[str, np.ndarray]], int]:
    from lightning_pc.data import io

    if reader.startswith("_selftest_"):
        return _self_test(reader.removeprefix("_selftest_"))
    if reader == "ScanChunks":
        scan = io.ScanChunks(path, chunk=chunk)
        parts = [_arrays(p) for p in scan]
        return parts, sum(len(p["pos"]) for p in parts if "pos" in p)
    out = _arrays(getattr(io, reader)(path))
    return [out], len(out.get("pos", out.get("vertices", [])))


def handle(req: dict[str, Any]) -> dict[str, Any]:
    from lightning_pc.data.errors import DataFormatError

    path, reader = req["path"], req["reader"]
    reset = _reset_peak()
    base = _status("VmRSS")
    start = time.perf_counter()
    res: dict[str, Any] = {"outcome": "ok", "nonfinite": [], "points": 0}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts, res["points"] = _read(reader, path, req.get("chunk", 4))
        for part in parts:
            for key, arr in part.items():
                if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                    res["nonfinite"].append(key)
        res["nonfinite"] = sorted(set(res["nonfinite"]))
    except DataFormatError as err:
        res.update(outcome="DataFormatError", message=str(err), names_file=path in str(err))
    except BaseException as err:  # noqa: BLE001 (a PanicException is a BaseException: a finding)
        kind = type(err)
        res.update(
            outcome="exception",
            type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(err)[:400],
            where="".join(traceback.format_tb(err.__traceback__)[-2:])[-800:],
        )
    res.update(
        seconds=time.perf_counter() - start,
        base=base,
        peak=_peak() if reset else 0,
        peak_valid=reset,
    )
    return res


def serve(conn_in: Connection, conn_out: Connection, warm: list, headroom: int) -> int:
    """One worker: warm up, cap the address space, then answer requests until told to stop."""
    for path, reader in warm:
        handle({"path": path, "reader": reader})
    base, size = _status("VmRSS"), _status("VmSize")
    if size and headroom:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (size + headroom, hard))
    conn_out.send({"ready": os.getpid(), "baseline": base, "peak_valid": _reset_peak()})
    while True:
        try:
            req = conn_in.recv()
        except EOFError:
            return 0
        if req is None:
            return 0
        conn_out.send(handle(req))


def main(argv: list[str]) -> int:
    """Import once, then fork a worker; when one dies (a signal, an abort, killed after a
    time-out) say so and fork the next: a new worker costs a fork, not the imports."""
    conn_in = Connection(int(argv[0]), writable=False)
    conn_out = Connection(int(argv[1]), readable=False)
    headroom = int(argv[2]) << 20
    import laspy  # noqa: F401  (the readers import these lazily: load them before measuring)
    import open3d  # noqa: F401

    import lightning_pc.data.io  # noqa: F401

    try:
        import lazrs  # noqa: F401
    except ImportError:
        pass
    try:
        warm = conn_in.recv()["warm"]
    except (EOFError, TypeError, KeyError):
        return 0
    while True:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve(conn_in, conn_out, warm, headroom)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code == 0:  # asked to stop, or the test is gone
            return 0
        try:
            conn_out.send({"died": code, "pid": pid})
        except OSError:
            return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main(sys.argv[1:]))
