"""The parent side of the reader fuzz test: one long-lived child that reads mutants.

:class:`Worker` starts ``runner.py`` once (importing torch and the readers costs seconds),
which forks the worker that reads, and sends it one file at a time over a pipe; a worker
that dies (a signal: the finding) or does not answer within the time limit (killed) is
replaced by a new fork of the runner, in milliseconds.
:func:`problems` says what is wrong with one outcome: the test asserts there is nothing,
the benchmark counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.data.fuzz.make_seeds import Seed, seeds
from tests.data.fuzz.mutate import holds_nonfinite

ROOT = Path(__file__).resolve().parents[3]
RUNNER = Path(__file__).with_name("runner.py")

TIMEOUT_S = 10.0  # a read of a file of a few KB takes milliseconds; this is a hang
HEADROOM_MIB = 1024  # RLIMIT_AS above the child's size after warm-up
MEM_SLACK = 16 << 20  # a read may grow the resident set by this much (seen: 1.1 MiB) ...
MEM_PER_BYTE = 64  # ... plus this many times the file's size
CHUNK = 4  # rows per ScanChunks chunk: several chunks per seed


@dataclass
class Result:
    outcome: str  # "ok", "DataFormatError", "exception", "crash" or "timeout"
    detail: str = ""
    nonfinite: list[str] = field(default_factory=list)
    names_file: bool = True
    growth: int = 0  # bytes the resident set grew above its size before the read
    seconds: float = 0.0
    points: int = 0


class Worker:
    """The child process, started on first use and again after it died."""

    def __init__(self, workdir: Path, timeout: float = TIMEOUT_S) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.baseline = 0  # resident set after the imports and warm-up
        self.pid = 0  # the worker process the runner forked
        self.peak_valid = False
        self.starts = 0  # runner processes started
        self.forks = 0  # workers forked (one more after each crash or time-out)
        self.n = 0

    def _start(self) -> None:
        r_req, w_req = os.pipe()
        r_res, w_res = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env.setdefault("OMP_NUM_THREADS", "1")
        self.log = open(self.workdir / f"worker{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER), str(r_req), str(w_res), str(HEADROOM_MIB)],
            pass_fds=(r_req, w_res),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
        )
        os.close(r_req)
        os.close(w_res)
        self.send = Connection(w_req, readable=False)
        self.recv = Connection(r_res, writable=False)
        self.starts += 1
        warm = []
        for seed in seeds().values():
            path = self.workdir / f"seed_{seed.name}{seed.suffix}"
            path.write_bytes(seed.data)
            warm += [(str(path), reader) for reader in seed.readers]
        self.send.send({"warm": warm})
        self._await_ready()

    def _await_ready(self) -> None:
        """Wait for a (new) worker's ``ready``: its pid and resident set after warm-up."""
        reply = self.recv.recv() if self.recv.poll(max(self.timeout, 120)) else None
        if reply is None or "ready" not in reply:
            self._kill()
            raise RuntimeError(f"the fuzz worker did not start ({reply}): {self._log_tail()}")
        self.forks += 1
        self.pid, self.baseline, self.peak_valid = (
            reply["ready"],
            reply["baseline"],
            reply["peak_valid"],
        )

    def _log_tail(self) -> str:
        try:
            self.log.flush()
            text = Path(self.log.name).read_bytes()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""
        return text.strip()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # the child this worker started, by its own handle
        if self.proc is not None:
            self.proc.wait()
        for conn in ("send", "recv"):
            if hasattr(self, conn):
                getattr(self, conn).close()
                delattr(self, conn)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:  # ask it to end; do not wait for Open3D's and torch's teardown
                self.send.send(None)
                self.proc.wait(timeout=0.5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def read(self, seed: Seed, reader: str, data: bytes) -> Result:
        """Read ``data`` (a file of ``seed``'s suffix) with ``reader`` in the child."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None
        self.n += 1
        path = self.workdir / f"mutant{self.n % 2}{seed.suffix}"
        path.write_bytes(data)
        try:
            self.send.send({"path": str(path), "reader": reader, "chunk": CHUNK})
            res: dict[str, Any] | None = (
                self.recv.recv() if self.recv.poll(self.timeout) else {"timeout": True}
            )
        except (EOFError, OSError):
            res = None
        if res is None:  # the forking parent itself is gone: start afresh
            tail = self._log_tail()
            self._kill()
            return Result("crash", f"the fuzz runner died; its output: {tail[-600:]}")
        if "timeout" in res:
            os.kill(self.pid, signal.SIGKILL)  # the worker this runner forked for us
            while self.recv.poll(60) and "died" not in self.recv.recv():
                pass  # an answer that came after the time-out, then the death notice
            self._await_ready()
            return Result("timeout", f"no answer in {self.timeout:g} s")
        if "died" in res:
            rc = res["died"]
            tail = self._log_tail()
            self._await_ready()
            what = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
            return Result("crash", f"{what}; child output: {tail[-600:]}")
        growth = max(res["peak"] - res["base"], 0) if res["peak_valid"] else 0
        detail = res.get("message", "")
        if res["outcome"] == "exception":
            detail = f"{res['type']}: {res['message']}\n{res['where']}"
        return Result(
            res["outcome"],
            detail,
            res["nonfinite"],
            res.get("names_file", True),
            growth,
            res["seconds"],
            res["points"],
        )

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def memory_limit(size: int) -> int:
    """How much a read of a file of ``size`` bytes may grow the resident set."""
    return MEM_SLACK + MEM_PER_BYTE * size


def problems(seed: Seed, data: bytes, result: Result) -> list[str]:
    """What is wrong with ``result`` (reading mutant ``data`` of ``seed``): empty if nothing."""
    out = []
    if result.outcome in ("crash", "timeout"):
        out.append(f"{result.outcome}: {result.detail}")
    elif result.outcome == "exception":
        out.append(f"an exception other than DataFormatError: {result.detail}")
    elif result.outcome == "DataFormatError" and not result.names_file:
        out.append(f"DataFormatError does not name the file: {result.detail}")
    if result.growth > memory_limit(len(data)):
        out.append(
            f"memory: the read grew the resident set by {result.growth >> 20} MiB, more than "
            f"{memory_limit(len(data)) >> 20} MiB for a file of {len(data)} bytes"
        )
    if result.outcome == "ok" and result.nonfinite and not holds_nonfinite(seed, data):
        out.append(f"returned non-finite values in {result.nonfinite} from a file without NaN/inf")
    return out


def category(result: Result, issues: list[str]) -> str:
    """The benchmark column of one outcome."""
    if result.outcome in ("crash", "timeout"):
        return result.outcome
    if any(i.startswith("memory") for i in issues) or "MemoryError" in result.detail:
        return "memory"
    if result.outcome == "exception":
        return "other"
    if any(i.startswith("returned non-finite") for i in issues):
        return "nonfinite"
    return result.outcome  # "ok" or "DataFormatError"
