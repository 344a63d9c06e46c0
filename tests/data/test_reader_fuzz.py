"""Reader fuzz test: mutated files never kill, hang or fool a public reader.

Small valid seed files of every format we read (``tests/data/fuzz/make_seeds.py``) are
mutated by hypothesis (truncated anywhere, bytes flipped, header counts enlarged or shrunk,
line endings swapped, non-UTF-8 bytes inserted, header lines duplicated or dropped, NaN/inf
values written, emptied; see ``tests/data/fuzz/mutate.py``) and each mutant is read by every
public reader that takes its suffix (``read_point_file``, ``read_scan``, ``ScanChunks``,
``read_mesh``) in ONE long-lived child process (``tests/data/fuzz/runner.py``, started again
when it dies), under an address-space cap and a wall-clock limit. For each mutant:

- the reader returns or raises :class:`DataFormatError` naming the file (anything else,
  ``PanicException`` included, fails);
- the child is not killed by a signal and answers in time;
- the read grows the child's resident set by at most ``MEM_SLACK + MEM_PER_BYTE x size``;
- a read that returns gives finite floats only, unless the mutant holds NaN/inf (the oracle
  :func:`~tests.data.fuzz.mutate.holds_nonfinite` says whether it does).

The default run is a small, derandomized slice (``FAST_EXAMPLES`` mutants per seed, reader and
mutation); ``pytest -m fuzz tests/data/test_reader_fuzz.py`` runs the long one
(``FUZZ_EXAMPLES``, mutations stacked too, failures shrunk). Failure classes the readers do
not handle yet are listed in :data:`KNOWN_UNFIXED` (xfail): remove an entry when its fix
merges. ``benchmarks/reader_fuzz.py`` prints the counts per reader.
"""

from __future__ import annotations

import random
import sys
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as fixed_seed
from hypothesis import strategies as st

from tests.data.fuzz.harness import Result, Worker, memory_limit, problems
from tests.data.fuzz.make_seeds import seeds
from tests.data.fuzz.mutate import (
    MUTATIONS,
    HypothesisDraw,
    RandomDraw,
    applies,
    holds_nonfinite,
    mutate,
)

if sys.platform != "linux":  # the child's peak memory comes from /proc/self
    pytest.skip("the reader fuzz test measures memory through /proc", allow_module_level=True)
pytest.importorskip("laspy")
pytest.importorskip("open3d")

FAST_EXAMPLES = 3  # per (seed, reader, mutation) in the default run
FUZZ_EXAMPLES = 50  # ... under -m fuzz (about 30,000 reads)

# (seed, reader, mutation) -> why it is expected to fail: a failure class found by this test
# (tests/data/fuzz/FINDINGS.md has them, F1-F11, with reproducers) that is not fixed yet.
# xfail(strict=False) until its fix merges, then delete the entry (XPASS says which can go).
# Empty: every class found on 5822510 is fixed in lightning_pc.data.formats.
KNOWN_UNFIXED: dict[tuple[str, str, str], str] = {}


def _cases(mutations: list[str]) -> list[Any]:
    out = []
    for seed in seeds().values():
        for reader in seed.readers:
            for name in mutations:
                if not applies(name, seed):
                    continue
                key = (seed.name, reader, name)
                marks = (
                    [pytest.mark.xfail(strict=False, reason=KNOWN_UNFIXED[key])]
                    if key in KNOWN_UNFIXED
                    else []
                )
                out.append(pytest.param(*key, id="-".join(key), marks=marks))
    return out


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory):
    with Worker(tmp_path_factory.mktemp("reader_fuzz")) as w:
        yield w


def _fuzz(worker: Worker, seed_name: str, reader: str, mutation: str, examples: int) -> None:
    seed = seeds()[seed_name]
    # the long run shrinks a failure to a small mutant, except for the known ones (shrinking a
    # hang costs a time-out per step)
    shrink = examples > FAST_EXAMPLES and (seed_name, reader, mutation) not in KNOWN_UNFIXED

    @fixed_seed(
        zlib.crc32(f"{seed_name}/{reader}/{mutation}".encode())
    )  # the same mutants every run
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def mutant_is_read_safely(data: st.DataObject) -> None:
        mutant, what = mutate(mutation, HypothesisDraw(data), seed)
        result = worker.read(seed, reader, mutant)
        issues = problems(seed, mutant, result)
        assert not issues, (
            f"{seed.name} read by {reader} after {'; '.join(what)}:\n"
            + "\n".join(issues)
            + f"\nmutant ({len(mutant)} bytes): {mutant[:1500]!r}"
        )

    mutant_is_read_safely()


@pytest.mark.parametrize(("seed", "reader", "mutation"), _cases(list(MUTATIONS)))
def test_mutants_are_read_safely(worker: Worker, seed: str, reader: str, mutation: str) -> None:
    _fuzz(worker, seed, reader, mutation, FAST_EXAMPLES)


@pytest.mark.fuzz
@pytest.mark.parametrize(("seed", "reader", "mutation"), _cases([*MUTATIONS, "stacked"]))
def test_mutants_are_read_safely_long(
    request: pytest.FixtureRequest, worker: Worker, seed: str, reader: str, mutation: str
) -> None:
    if "fuzz" not in (request.config.option.markexpr or ""):
        pytest.skip("the long fuzz run: select it with -m fuzz")
    _fuzz(worker, seed, reader, mutation, FUZZ_EXAMPLES)


# --- the harness itself: seeds are valid, the oracle and the worker see what they must -------


@pytest.mark.parametrize("name", list(seeds()))
def test_seeds_are_read_back(worker: Worker, name: str) -> None:
    """Every reader reads every unmutated seed, finite, with no memory growth to speak of:
    the mutants start from files the readers take, and the checks are live."""
    seed = seeds()[name]
    assert not holds_nonfinite(seed, seed.data), "the oracle would skip the finite check"
    for reader in seed.readers:
        result = worker.read(seed, reader, seed.data)
        if reader == "read_mesh" and seed.name.endswith("_points"):
            assert result.outcome == "DataFormatError", (reader, result)  # no faces
            continue
        assert result.outcome == "ok", (reader, result)
        assert not problems(seed, seed.data, result), (reader, result)
        if reader == "read_mesh":  # Open3D keeps some of an STL's 36 corners apart
            assert len(seed.pos) <= result.points <= 36, result.points
        else:
            assert result.points == len(seed.pos), (reader, result.points)


@pytest.mark.parametrize("name", list(seeds()))
def test_oracle_sees_nonfinite_mutants(name: str) -> None:
    """A NaN/inf written into a seed is seen by the oracle (else a reader returning it would
    fail the test for the wrong reason)."""
    seed = seeds()[name]
    if not applies("nonfinite", seed):
        pytest.skip("no float values")
    for k in range(8):
        mutant, what = mutate("nonfinite", RandomDraw(random.Random(k)), seed)
        assert mutant != seed.data, what
        # a number past float64's range (1e999) is no NaN/inf in the file: a reader must
        # refuse it, not return infinity, so the oracle does not excuse it
        assert holds_nonfinite(seed, mutant) != ("e999" in what[0] or "e400" in what[0]), what


def test_problems_are_seen() -> None:
    """Each failure the test asserts against is reported by :func:`problems`."""
    seed = seeds()["ply_ascii_points"]
    data = seed.data
    assert problems(seed, data, Result("ok")) == []
    assert problems(seed, data, Result("DataFormatError", "x")) == []
    for bad in (
        Result("crash", "killed by SIGSEGV"),
        Result("timeout"),
        Result("exception", "pyo3_runtime.PanicException: boom"),
        Result("DataFormatError", "elsewhere", names_file=False),
        Result("ok", growth=memory_limit(len(data)) + 1),
        Result("ok", nonfinite=["pos"]),
    ):
        assert problems(seed, data, bad), bad
    nan = data[: seed.header_end] + b"nan " + data[seed.header_end :]
    assert problems(seed, nan, Result("ok", nonfinite=["pos"])) == []


def test_worker_survives_crash_hang_and_memory(worker: Worker) -> None:
    """The child's signal death, hang, big allocation and BaseException are each seen, and
    the worker reads on after each."""
    seed = seeds()["txt"]
    timeout = worker.timeout
    try:
        worker.timeout = 3.0
        for probe, outcome in (
            ("_selftest_segv", "crash"),
            ("_selftest_hang", "timeout"),
            ("_selftest_panic", "exception"),
        ):
            assert worker.read(seed, probe, seed.data).outcome == outcome, probe
        grow = worker.read(seed, "_selftest_alloc", seed.data)
        assert grow.outcome == "ok" and grow.growth > memory_limit(len(seed.data)), grow
        assert problems(seed, seed.data, grow)
    finally:
        worker.timeout = timeout
    result = worker.read(seed, "read_point_file", seed.data)
    assert result.outcome == "ok" and result.points == len(seed.pos)
