"""Small valid seed files of every format the readers take, for the reader fuzz test.

Usage: ``python tests/data/fuzz/make_seeds.py OUT_DIR`` writes every seed into ``OUT_DIR``
(for a look with other tools); the fuzz test and ``benchmarks/reader_fuzz.py`` call
:func:`seeds`, which builds them in memory (deterministic bytes; LAS/LAZ through laspy).

Every seed knows where its header ends, where its header counts are (so a mutation can
enlarge or shrink them) and where its float values are (so a mutation can put NaN or an
infinity there). Coordinates are multiples of 1/16 and colours stay below 127, so no
window of a seed's bytes decodes as a NaN or infinite float: the fuzz test's oracle
(:func:`tests.data.fuzz.mutate.holds_nonfinite`) can tell a mutant that holds one.
"""

from __future__ import annotations

import datetime
import io
import re
import struct
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

# the public readers, by name, and the suffixes each takes
POINT_READERS = ("read_point_file", "read_scan", "ScanChunks")


@dataclass(frozen=True)
class Count:
    """A header count a mutation may change: decimal digits (``text``) or a packed integer."""

    name: str
    start: int
    end: int  # text: the digits' span; binary: start + struct size
    fmt: str | None = None  # struct format of a binary count ("<I", "<Q", "B", ">i", ...)


@dataclass(frozen=True)
class Seed:
    """One valid file and what the mutations need to know about it."""

    name: str
    suffix: str
    data: bytes
    family: str  # "text", "binary", "pcd_compressed" or "las": how the oracle reads a mutant
    readers: tuple[str, ...]
    header_end: int  # bytes of the text header (0: none); binary files keep CR LF swaps there
    counts: tuple[Count, ...] = ()
    floats: tuple[tuple[int, str], ...] = ()  # binary: (offset, struct format) of float values
    nonfinite: bool = False  # the seed itself holds NaN/inf
    pos: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # coordinates it holds


N = 12  # points of the point seeds


def _points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(25)
    k = rng.integers(-40, 40, (N, 3))
    k[np.abs(k) == 31] = 30  # 31/16 in float64 is 0x3fff...: a window that reads as NaN
    pos = k / 16.0  # exact in float32, short in text
    normals = np.array(
        [[1, 0, 0], [0, -1, 0], [0, 0, 1], [0.6, 0.8, 0], [0, 0.6, -0.8], [-0.8, 0, 0.6]] * 2
    )
    rgb = rng.integers(10, 120, (N, 3))  # below 127: no 0x7f / 0xff bytes
    return pos, normals, rgb


CUBE_V = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float64
)
CUBE_F = np.array(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
)  # fmt: skip


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))


def _text_counts(data: bytes, pattern: bytes, name: str, group: int = 1) -> list[Count]:
    return [
        Count(name, m.start(group), m.end(group)) for m in re.finditer(pattern, data, re.MULTILINE)
    ]


def _floats(base: int, rec: np.dtype, n: int) -> tuple[tuple[int, str], ...]:
    out = []
    assert rec.names is not None and rec.fields is not None
    for name in rec.names:
        dt, off = rec.fields[name][0], rec.fields[name][1]
        if dt.kind == "f":
            fmt = (">" if dt.byteorder == ">" else "<") + ("f" if dt.itemsize == 4 else "d")
            out += [(base + i * rec.itemsize + off, fmt) for i in range(n)]
    return tuple(out)


# --- PLY ---------------------------------------------------------------------------------------


def _ply(fmt: str, mesh: bool) -> Seed:
    end = {"ascii": "=", "binary_little_endian": "<", "binary_big_endian": ">"}[fmt]
    pos, normals, rgb = _points()
    head = f"ply\nformat {fmt} 1.0\ncomment fuzz seed\n"
    if mesh:
        verts = CUBE_V
        head += f"element vertex {len(verts)}\nproperty float x\nproperty float y\n"
        head += f"property float z\nelement face {len(CUBE_F)}\n"
        head += "property list uchar int vertex_indices\nend_header\n"
    else:
        verts = pos
        head += f"element vertex {N}\n" + "".join(
            f"property float {p}\n" for p in ("x", "y", "z", "nx", "ny", "nz")
        )
        head += "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    header = head.encode()
    floats: tuple[tuple[int, str], ...] = ()
    counts: list[Count] = []
    if fmt == "ascii":
        rows = []
        for i, v in enumerate(verts):
            cols = [_num(c) for c in v]
            if not mesh:
                cols += [_num(c) for c in normals[i]] + [str(c) for c in rgb[i]]
            rows.append(" ".join(cols))
        if mesh:
            rows += ["3 " + " ".join(str(k) for k in f) for f in CUBE_F]
        data = header + ("\n".join(rows) + "\n").encode()
        if mesh:  # the list lengths of the face rows
            first_face = len(header) + sum(len(r) + 1 for r in rows[: len(verts)])
            counts += [
                Count("face list length", first_face + m.start(1), first_face + m.end(1))
                for m in re.finditer(rb"^(3) ", data[first_face:], re.MULTILINE)
            ]
    else:
        if mesh:
            rec = np.dtype([("x", end + "f4"), ("y", end + "f4"), ("z", end + "f4")])
            v = np.zeros(len(verts), rec)
            for k, c in enumerate("xyz"):
                v[c] = verts[:, k]
            frec = np.dtype([("n", "u1"), ("i", end + "i4", (3,))])
            f = np.zeros(len(CUBE_F), frec)
            f["n"], f["i"] = 3, CUBE_F
            data = header + v.tobytes() + f.tobytes()
            base = len(header) + v.nbytes
            counts += [
                Count(
                    "face list length", base + i * frec.itemsize, base + i * frec.itemsize + 1, "B"
                )
                for i in range(len(CUBE_F))
            ]
        else:
            rec = np.dtype(
                [(c, end + "f4") for c in ("x", "y", "z", "nx", "ny", "nz")]
                + [(c, "u1") for c in ("red", "green", "blue")]
            )
            v = np.zeros(N, rec)
            for k, c in enumerate("xyz"):
                v[c] = pos[:, k]
            for k, c in enumerate(("nx", "ny", "nz")):
                v[c] = normals[:, k]
            for k, c in enumerate(("red", "green", "blue")):
                v[c] = rgb[:, k]
            data = header + v.tobytes()
        floats = _floats(len(header), rec, len(verts))
    counts = _text_counts(data[: len(header)], rb"^element \w+ (\d+)", "element count") + counts
    short = {"ascii": "ascii", "binary_little_endian": "ble", "binary_big_endian": "bbe"}[fmt]
    name = f"ply_{short}"
    return Seed(
        name=f"{name}_{'mesh' if mesh else 'points'}",
        suffix=".ply",
        data=data,
        family="text" if fmt == "ascii" else "binary",
        readers=(*POINT_READERS, "read_mesh"),
        header_end=len(header),
        counts=tuple(counts),
        floats=floats,
        pos=verts,
    )


# --- PCD ---------------------------------------------------------------------------------------


def lzf_literal(raw: bytes) -> bytes:
    """LZF-compress ``raw`` as literal runs only (valid LZF, what PCL's decoder reads)."""
    out = bytearray()
    for i in range(0, len(raw), 32):
        chunk = raw[i : i + 32]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out)


def lzf_decompress(src: bytes, limit: int) -> bytes | None:
    """Decode an LZF stream (``None`` if it is not one, or decodes past ``limit`` bytes)."""
    out = bytearray()
    i = 0
    while i < len(src):
        ctrl = src[i]
        i += 1
        if ctrl < 32:
            n = ctrl + 1
            if i + n > len(src):
                return None
            out += src[i : i + n]
            i += n
        else:
            n = ctrl >> 5
            if n == 7:
                if i >= len(src):
                    return None
                n += src[i]
                i += 1
            if i >= len(src):
                return None
            ref = len(out) - ((ctrl & 0x1F) << 8) - src[i] - 1
            i += 1
            if ref < 0:
                return None
            for k in range(n + 2):
                out.append(out[ref + k])
        if len(out) > limit:
            return None
    return bytes(out)


def _pcd(kind: str, wide: bool = False) -> Seed:
    pos, normals, rgb = _points()
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    if wide:  # georeferenced doubles
        names, sizes, types = ["x", "y", "z", "intensity"], [8, 8, 8, 4], ["F", "F", "F", "F"]
        rec = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("intensity", "<f4")])
    else:
        names = ["x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb"]
        sizes = [4] * 7
        types = ["F"] * 6 + ["U" if kind == "ascii" else "F"]
        rec = np.dtype([(c, "<f4") for c in names[:6]] + [("rgb", "<u4")])
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(names)}\nSIZE {' '.join(map(str, sizes))}\n"
        f"TYPE {' '.join(types)}\nCOUNT {' '.join('1' for _ in names)}\n"
        f"WIDTH {N}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {N}\nDATA {kind}\n"
    ).encode()
    v = np.zeros(N, rec)
    for k, c in enumerate("xyz"):
        v[c] = pos[:, k]
    if wide:
        v["intensity"] = np.arange(N) + 1
    else:
        for k, c in enumerate(("normal_x", "normal_y", "normal_z")):
            v[c] = normals[:, k]
        v["rgb"] = packed
    floats: tuple[tuple[int, str], ...] = ()
    if kind == "ascii":
        rows = [" ".join([_num(r[c]) for c in names[:6]] + [str(int(r["rgb"]))]) for r in v]
        body = ("\n".join(rows) + "\n").encode()
        family = "text"
    elif kind == "binary":
        body = v.tobytes()
        floats = tuple((o, f) for o, f in _floats(len(header), rec, N) if not wide or f == "<d")
        family = "binary"
    else:  # binary_compressed: the fields one after another (SoA), LZF-compressed
        soa = b"".join(np.ascontiguousarray(v[c]).tobytes() for c in rec.names or ())
        comp = lzf_literal(soa)
        body = struct.pack("<II", len(comp), len(soa)) + comp
        family = "pcd_compressed"
    data = header + body
    counts = _text_counts(header, rb"^(?:POINTS|WIDTH|HEIGHT) (\d+)", "PCD count")
    if kind == "binary_compressed":
        counts.append(Count("compressed size", len(header), len(header) + 4, "<I"))
        counts.append(Count("uncompressed size", len(header) + 4, len(header) + 8, "<I"))
    return Seed(
        name=f"pcd_{kind}{'_double' if wide else ''}",
        suffix=".pcd",
        data=data,
        family=family,
        readers=POINT_READERS,
        header_end=len(header),
        counts=tuple(counts),
        floats=floats,
        pos=pos,
    )


# --- LAS / LAZ ----------------------------------------------------------------------------------


def _las(version: str, compress: bool) -> Seed:
    import laspy

    pos, _, rgb = _points()
    fmt = 3 if version == "1.2" else 7
    header = laspy.LasHeader(point_format=fmt, version=version)
    header.scales = np.array([1 / 1024] * 3)  # exact binary steps
    header.offsets = np.array([512.0, 1024.0, 0.0])
    header.creation_date = datetime.date(2020, 1, 1)
    header.generating_software = "lightning_pc fuzz seed"
    header.system_identifier = "fuzz"
    header.vlrs.append(
        laspy.VLR(user_id="fuzz", record_id=1, description="seed", record_data=b"seed" * 4)
    )
    las = laspy.LasData(header)
    las.x, las.y, las.z = pos[:, 0] + 512, pos[:, 1] + 1024, pos[:, 2]
    las.red, las.green, las.blue = (rgb * 256).T
    las.intensity = np.arange(N) * 10
    las.classification = np.full(N, 2)
    las.gps_time = np.arange(N) / 4
    buf = io.BytesIO()
    if compress:
        las.write(buf, do_compress=True, laz_backend=laspy.LazBackend.Lazrs)
    else:
        las.write(buf, do_compress=False)
    data = buf.getvalue()
    (header_size,) = struct.unpack_from("<H", data, 94)
    (offset,) = struct.unpack_from("<I", data, 96)
    (nvlr,) = struct.unpack_from("<I", data, 100)
    counts = [
        Count("header size", 94, 96, "<H"),
        Count("offset to point data", 96, 100, "<I"),
        Count("VLR count", 100, 104, "<I"),
        Count("point record length", 105, 107, "<H"),
        Count("legacy point count", 107, 111, "<I"),
    ]
    if version == "1.4":
        counts += [
            Count("start of first EVLR", 235, 243, "<Q"),
            Count("EVLR count", 243, 247, "<I"),
            Count("point count", 247, 255, "<Q"),
        ]
    at = header_size
    for _ in range(nvlr):  # each VLR's record length
        counts.append(Count("VLR record length", at + 20, at + 22, "<H"))
        (length,) = struct.unpack_from("<H", data, at + 20)
        at += 54 + length
    if compress:
        counts.append(Count("LAZ chunk table offset", offset, offset + 8, "<q"))
    floats = tuple((o, "<d") for o in range(131, 179, 8))  # scales and offsets
    return Seed(
        name=f"{'laz' if compress else 'las'}{version.replace('.', '')}",
        suffix=".laz" if compress else ".las",
        data=data,
        family="las",
        readers=POINT_READERS,
        header_end=0,
        counts=tuple(counts),
        floats=floats,
        pos=pos + [512, 1024, 0],
    )


# --- text, NPY, KITTI ---------------------------------------------------------------------------


def _text(suffix: str, delimiter: str = " ", count_line: bool = False) -> Seed:
    pos, _, rgb = _points()
    rows = [delimiter.join([_num(c) for c in pos[i]] + [str(c) for c in rgb[i]]) for i in range(N)]
    head = f"{N}\n" if count_line else ""
    data = (head + "\n".join(rows) + "\n").encode()
    counts = [Count("PTS point count", 0, len(str(N)))] if count_line else []
    return Seed(
        name=suffix.lstrip(".") + ("_counted" if count_line else ""),
        suffix=suffix,
        data=data,
        family="text",
        readers=POINT_READERS,
        header_end=len(head),
        counts=tuple(counts),
        pos=pos,
    )


def _npy(dtype: str) -> Seed:
    pos, _, rgb = _points()
    arr = np.concatenate([pos, rgb], 1).astype(dtype)
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    (hlen,) = struct.unpack_from("<H", data, 8)
    header_end = 10 + hlen
    counts = _text_counts(data[:header_end], rb"'shape': \((\d+), (\d+)\)", "npy rows")
    counts += _text_counts(data[:header_end], rb"'shape': \((\d+), (\d+)\)", "npy columns", 2)
    item = arr.dtype.itemsize
    fmt = "<" + ("f" if item == 4 else "d")
    return Seed(
        name=f"npy_{dtype}",
        suffix=".npy",
        data=data,
        family="binary",
        readers=POINT_READERS,
        header_end=header_end,
        counts=tuple(counts),
        floats=tuple((header_end + k * item, fmt) for k in range(arr.size)),
        pos=pos,
    )


def _kitti() -> Seed:
    pos, _, _ = _points()
    arr = np.concatenate([pos, np.arange(N)[:, None] / 16], 1).astype("<f4")
    return Seed(
        name="kitti_bin",
        suffix=".bin",
        data=arr.tobytes(),
        family="binary",
        readers=("read_scan", "ScanChunks"),
        header_end=0,
        floats=tuple((4 * k, "<f") for k in range(arr.size)),
        pos=pos,
    )


# --- meshes ------------------------------------------------------------------------------------


def _off() -> Seed:
    rows = [" ".join(_num(c) for c in v) for v in CUBE_V]
    rows += ["3 " + " ".join(map(str, f)) for f in CUBE_F]
    head = f"OFF\n{len(CUBE_V)} {len(CUBE_F)} 0\n"
    data = (head + "\n".join(rows) + "\n").encode()
    counts = _text_counts(data[: len(head)], rb"^(\d+) (\d+) (\d+)$", "OFF vertex count")
    counts += _text_counts(data[: len(head)], rb"^(\d+) (\d+) (\d+)$", "OFF face count", 2)
    faces_at = len(head) + sum(len(r) + 1 for r in rows[: len(CUBE_V)])
    counts += [
        Count("face list length", faces_at + m.start(1), faces_at + m.end(1))
        for m in re.finditer(rb"^(3) ", data[faces_at:], re.MULTILINE)
    ]
    return Seed("off", ".off", data, "text", ("read_mesh",), len(head), tuple(counts), pos=CUBE_V)


def _obj() -> Seed:
    lines = ["# fuzz seed", "mtllib seed.mtl", "o cube"]
    lines += ["v " + " ".join(_num(c) for c in v) for v in CUBE_V]
    lines += ["vn 0 0 1", "usemtl grey", "s off"]
    lines += ["f " + " ".join(f"{k + 1}//1" for k in f) for f in CUBE_F]
    data = ("\n".join(lines) + "\n").encode()
    counts = _text_counts(data, rb"[ ](\d+)//", "face vertex index")
    return Seed("obj", ".obj", data, "text", ("read_mesh",), 0, tuple(counts), pos=CUBE_V)


def _stl(binary: bool) -> Seed:
    tri = CUBE_V[CUBE_F]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if binary:
        rec = np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])
        a = np.zeros(len(tri), rec)
        a["n"], a["v"] = normal, tri
        head = b"fuzz seed stl".ljust(80, b" ")
        data = head + struct.pack("<I", len(tri)) + a.tobytes()
        floats = tuple(
            (84 + i * rec.itemsize + 4 * k, "<f") for i in range(len(tri)) for k in range(12)
        )
        counts = (Count("STL triangle count", 80, 84, "<I"),)
        return Seed(
            "stl_binary", ".stl", data, "binary", ("read_mesh",), 0, counts, floats, pos=CUBE_V
        )
    out = ["solid seed"]
    for n, t in zip(normal, tri):
        out.append("  facet normal " + " ".join(_num(c) for c in n))
        out.append("    outer loop")
        out += ["      vertex " + " ".join(_num(c) for c in v) for v in t]
        out += ["    endloop", "  endfacet"]
    out.append("endsolid seed")
    data = ("\n".join(out) + "\n").encode()
    return Seed("stl_ascii", ".stl", data, "text", ("read_mesh",), 0, pos=CUBE_V)


@lru_cache(maxsize=1)
def seeds() -> dict[str, Seed]:
    """Every seed, by name."""
    out = [
        *(
            _ply(f, m)
            for m in (False, True)
            for f in ("ascii", "binary_little_endian", "binary_big_endian")
        ),
        _pcd("ascii"),
        _pcd("binary"),
        _pcd("binary_compressed"),
        _pcd("binary", wide=True),
        _las("1.2", False),
        _las("1.4", False),
        _las("1.2", True),
        _las("1.4", True),
        _text(".txt"),
        _text(".xyz", ","),
        _text(".pts", count_line=True),
        _npy("float32"),
        _npy("float64"),
        _kitti(),
        _off(),
        _obj(),
        _stl(False),
        _stl(True),
    ]
    return {s.name: s for s in out}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds().values():
        (out / (seed.name + seed.suffix)).write_bytes(seed.data)
        print(out / (seed.name + seed.suffix))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
