"""Reader fuzz counts: N mutants per (format, reader), and what each reader did with them.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reader_fuzz.py --mutants 30`` (2,070
reads in about 2 minutes on a busy 2-core machine, each hang costing its 10 s time-out;
``--formats ply_ble_mesh,las12`` for a few seeds, ``--findings`` to print the first mutant of
each failure class). The seeds, mutations,
child process and checks are those of ``tests/data/test_reader_fuzz.py``: each mutant is
one of the mutations (or two to four stacked), drawn from ``random.Random`` seeded by
``--seed``, the format, the reader and the mutant's index, so a run is reproducible.

Prints a markdown table: format (seed), reader, mutants run, ok reads, DataFormatError,
other exceptions, crashes (the child killed by a signal), timeouts, memory over the limit,
reads that returned NaN/inf from a file without any, and the largest growth of the reading
process's resident set over one read that returned or raised DataFormatError.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.data.fuzz.harness import TIMEOUT_S, Worker, category, problems  # noqa: E402
from tests.data.fuzz.make_seeds import seeds  # noqa: E402
from tests.data.fuzz.mutate import ALL_MUTATIONS, RandomDraw, applies, mutate  # noqa: E402

COLUMNS = ("ok", "DataFormatError", "other", "crash", "timeout", "memory", "nonfinite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=30, help="mutants per (format, reader)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default="", help="comma-separated seed names (default: all)")
    parser.add_argument("--readers", default="", help="comma-separated readers (default: all)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per read")
    parser.add_argument("--findings", action="store_true", help="print each failure class once")
    args = parser.parse_args(argv)
    chosen = [s for s in seeds().values() if not args.formats or s.name in args.formats.split(",")]
    counts: dict[tuple[str, str], Counter[str]] = {}
    first: dict[tuple[str, str, str, str], tuple[list[str], bytes, str]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Worker(Path(tmp), timeout=args.timeout) as worker:
        for seed in chosen:
            names = [n for n in ALL_MUTATIONS if applies(n, seed) and n != "empty"]
            for reader in seed.readers:
                if args.readers and reader not in args.readers.split(","):
                    continue
                tally: Counter[str] = Counter()
                for i in range(args.mutants):
                    key = f"{args.seed}/{seed.name}/{reader}/{i}".encode()
                    draw = RandomDraw(random.Random(zlib.crc32(key)))
                    mutation = "empty" if i == 0 else names[(i - 1) % len(names)]
                    data, what = mutate(mutation, draw, seed)
                    result = worker.read(seed, reader, data)
                    issues = problems(seed, data, result)
                    col = category(result, issues)
                    tally[col] += 1
                    if result.outcome in ("ok", "DataFormatError"):
                        tally["growth"] = max(tally["growth"], result.growth)
                    tally["run"] += 1
                    if col not in ("ok", "DataFormatError"):
                        first.setdefault(
                            (seed.name, reader, mutation, col), (what, data, "\n".join(issues))
                        )
                counts[(seed.name, reader)] = tally
                print(f"{seed.name:24s} {reader:16s} {dict(tally)}", file=sys.stderr, flush=True)
        restarts = worker.forks - 1
    seconds = time.perf_counter() - start
    header = ("format", "reader", "mutants", "ok reads", "DataFormatError", "other exceptions",
              "crashes", "timeouts", "memory over limit", "NaN/inf returned",
              "max RSS growth KiB")  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    total: Counter[str] = Counter()
    for (name, reader), tally in counts.items():
        total.update(tally)
        print(
            f"| {name} | {reader} | {tally['run']} | "
            + " | ".join(str(tally[c]) for c in COLUMNS)
            + f" | {tally['growth'] >> 10} |"
        )
    print(
        "| **all** | | "
        + f"{total['run']} | "
        + " | ".join(str(total[c]) for c in COLUMNS)
        + " | |"
    )
    print(
        f"\n{total['run']} reads in {seconds:.0f} s, reader process replaced {restarts} times "
        f"(timeout {args.timeout:g} s per read)"
    )
    if args.findings:
        print("\n## First mutant of each failure class (format, reader, mutation, outcome)\n")
        for (name, reader, mutation, col), (what, data, message) in first.items():
            print(f"- {name} / {reader} / {mutation} / {col}: {'; '.join(what)}")
            print(f"  {message.splitlines()[0] if message else ''}"[:400])
            print(f"  mutant ({len(data)} bytes): {data[:300]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
