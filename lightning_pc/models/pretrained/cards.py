"""The model cards: one frozen record per published checkpoint.

Sources (read 2026-12-07): the Hugging Face repositories ``Pointcept/PointTransformerV3``
(revision ``5e25cfaf759289b03db1f90f143b3dc5172929d3``, "Release experiment records",
2024-02-23; licence MIT), ``facebook/sonata``, ``Pointcept/Concerto`` and
``Pointcept/Utonia`` (no commit hash of theirs could be found: their cards pin ``main``,
say so, and warn when loaded; sha256 from the hub's LFS pointers where published); the
model configs of Pointcept (``configs/scannet/semseg-pt-v3m1-0-base.py``,
``configs/scannet200/...``, ``configs/s3dis/semseg-pt-v3m1-1-rpe.py``) and the inference
packages ``sonata``, ``concerto`` and ``utonia`` (file names, input transforms, heads);
metrics from Pointcept's README model zoo and the papers' abstracts.

Input normalisation differs between the families: the PTv3 checkpoints (December 2023)
were trained with Pointcept's ``NormalizeColor`` of that time, ``color / 127.5 - 1``; Sonata,
Concerto and Utonia (2025-2026) with ``color / 255``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_pc.data.palettes import S3DIS_PALETTE, class_palette
from lightning_pc.models.pretrained.loading import HubFile
from lightning_pc.models.ptv3 import PRESETS as PTV3_PRESETS

NC = "CC-BY-NC-4.0"


@dataclass(frozen=True)
class Inputs:
    """What a checkpoint was trained on, in the terms of our batches.

    Args:
        x: the channels of ``batch.x``, in order (``pos`` is always the coordinates in
            metres).
        stem: what the official network's first layer reads, in order (Pointcept's
            ``feat_keys``), for comparison.
        grid_size: voxel edge the checkpoint was trained with (in scaled units).
        coord_scale: factor applied to the coordinates before voxelising (Utonia's
            "perceptual granularity": 0.5 for indoor scans such as ScanNet).
        note: anything else a user must do (centring, zero-filled channels).
    """

    x: tuple[str, ...]
    stem: tuple[str, ...]
    grid_size: float
    coord_scale: float = 1.0
    note: str = ""

    @property
    def in_channels(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class PretrainedCard:
    """A published checkpoint: how to build the network, where the weights are, what they
    expect and what they are worth.

    Args:
        name: the card's name (``create_model(name, pretrained=True)``).
        summary: one line.
        builder: registered network that builds the architecture.
        kwargs: its arguments (sorted pairs; :attr:`arch_kwargs` as a dict).
        num_classes: classes of the trained head (``None``: an encoder without one).
        files: the weights; several files are merged (an encoder and its probe head).
        key_map: name in :data:`~lightning_pc.models.pretrained.keymaps.KEY_MAPS`.
        inputs: expected input.
        class_names: names of the head's classes, in order.
        palette: ``[r, g, b]`` per class.
        metric: published figure and its source.
        licence: licence of the weights (SPDX id).
        paper: citation.
        notes: caveats.
    """

    name: str
    summary: str
    builder: str
    kwargs: tuple[tuple[str, Any], ...]
    num_classes: int | None
    files: tuple[HubFile, ...]
    key_map: str
    inputs: Inputs
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    metric: str = ""
    licence: str = "MIT"
    paper: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """The builder's arguments (lists for tuples, as YAML configs give them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}

    @property
    def non_commercial(self) -> bool:
        return "NC" in self.licence


def _kw(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kwargs.items()))


def _rgb(p: Any) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(c[0]), int(c[1]), int(c[2])) for c in p)


# --- classes ----------------------------------------------------------------------------
SCANNET20 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain",
    "toilet", "sink", "bathtub", "otherfurniture",
)  # fmt: skip
# The ScanNet benchmark's colours of the NYU40 ids 1-12, 14, 16, 24, 28, 33, 34, 36, 39.
SCANNET20_PALETTE = (
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
    (196, 156, 148), (23, 190, 207), (247, 182, 210), (219, 219, 141), (255, 127, 14),
    (158, 218, 229), (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
)  # fmt: skip
# ScanNet200's benchmark classes, in the order of its label ids (the order of Pointcept's
# segment200 and of our ScanNet data module's IDS_200).
SCANNET200 = (
    "wall", "chair", "floor", "table", "door", "couch", "cabinet", "shelf", "desk",
    "office chair", "bed", "pillow", "sink", "picture", "window", "toilet", "bookshelf",
    "monitor", "curtain", "book", "armchair", "coffee table", "box", "refrigerator", "lamp",
    "kitchen cabinet", "towel", "clothes", "tv", "nightstand", "counter", "dresser", "stool",
    "cushion", "plant", "ceiling", "bathtub", "end table", "dining table", "keyboard", "bag",
    "backpack", "toilet paper", "printer", "tv stand", "whiteboard", "blanket",
    "shower curtain", "trash can", "closet", "stairs", "microwave", "stove", "shoe",
    "computer tower", "bottle", "bin", "ottoman", "bench", "board", "washing machine",
    "mirror", "copier", "basket", "sofa chair", "file cabinet", "fan", "laptop", "shower",
    "paper", "person", "paper towel dispenser", "oven", "blinds", "rack", "plate",
    "blackboard", "piano", "suitcase", "rail", "radiator", "recycling bin", "container",
    "wardrobe", "soap dispenser", "telephone", "bucket", "clock", "stand", "light",
    "laundry basket", "pipe", "clothes dryer", "guitar", "toilet paper holder", "seat",
    "speaker", "column", "bicycle", "ladder", "bathroom stall", "shower wall", "cup",
    "jacket", "storage bin", "coffee maker", "dishwasher", "paper towel roll", "machine",
    "mat", "windowsill", "bar", "toaster", "bulletin board", "ironing board", "fireplace",
    "soap dish", "kitchen counter", "doorframe", "toilet paper dispenser", "mini fridge",
    "fire extinguisher", "ball", "hat", "shower curtain rod", "water cooler",
    "paper cutter", "tray", "shower door", "pillar", "ledge", "toaster oven", "mouse",
    "toilet seat cover dispenser", "furniture", "cart", "storage container", "scale",
    "tissue box", "light switch", "crate", "power outlet", "decoration", "sign",
    "projector", "closet door", "vacuum cleaner", "candle", "plunger", "stuffed animal",
    "headphones", "dish rack", "broom", "guitar case", "range hood", "dustpan",
    "hair dryer", "water bottle", "handicap bar", "purse", "vent", "shower floor",
    "water pitcher", "mailbox", "bowl", "paper bag", "alarm clock", "music stand",
    "projector screen", "divider", "laundry detergent", "bathroom counter", "object",
    "bathroom vanity", "closet wall", "laundry hamper", "bathroom stall door",
    "ceiling light", "trash bin", "dumbbell", "stair rail", "tube", "bathroom cabinet",
    "cd case", "closet rod", "coffee kettle", "structure", "shower head", "keyboard piano",
    "case of water bottles", "coat rack", "storage organizer", "folded chair",
    "fire alarm", "power strip", "calendar", "poster", "potted plant", "luggage", "mattress",
)  # fmt: skip
S3DIS13 = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)  # fmt: skip

# --- inputs -----------------------------------------------------------------------------
_PTV3_X = ("r/127.5-1", "g/127.5-1", "b/127.5-1", "nx", "ny", "nz")
PTV3_INPUTS = Inputs(
    x=_PTV3_X,
    stem=_PTV3_X,
    grid_size=0.02,
    note="colour 0-255 mapped to [-1, 1] (Pointcept's NormalizeColor before v1.6: "
    "color / 127.5 - 1) then unit normals; the stem reads no coordinates",
)
_SSL_X = ("r/255", "g/255", "b/255", "nx", "ny", "nz")
SSL_INPUTS = Inputs(
    x=_SSL_X,
    stem=("x", "y", "z") + _SSL_X,
    grid_size=0.02,
    note="colour in [0, 1] then unit normals; the network centres each cloud (bounding-box "
    "middle in x, y; minimum in z) and prepends the centred coordinates; zeros for a "
    "missing colour or normal",
)
UTONIA_INPUTS = Inputs(
    x=_SSL_X,
    stem=("x", "y", "z") + _SSL_X,
    grid_size=0.01,
    coord_scale=0.5,
    note="as Sonata, with coordinates scaled by 0.5 before a 0.01 grid (Utonia's ScanNet "
    "setting; larger scales give finer features, objects are normalised first); zeros "
    "for a missing colour or normal (Utonia was trained to tolerate them)",
)

# --- sources ----------------------------------------------------------------------------
PTV3_REPO = "Pointcept/PointTransformerV3"
PTV3_REV = "5e25cfaf759289b03db1f90f143b3dc5172929d3"
SONATA_REPO = "facebook/sonata"
CONCERTO_REPO = "Pointcept/Concerto"
UTONIA_REPO = "Pointcept/Utonia"
MAIN_NOTE = (
    "pinned to the branch 'main': no commit hash of this repository was found when the card "
    "was written, so the file may change upstream"
)
PTV3_PAPER = "Wu et al., Point Transformer V3, CVPR 2024 (arXiv:2312.10035)"
SONATA_PAPER = "Wu et al., Sonata, CVPR 2025 (arXiv:2503.16429)"
CONCERTO_PAPER = "Zhang et al., Concerto, NeurIPS 2025 (arXiv:2510.23607)"
UTONIA_PAPER = "Zhang et al., Utonia, 2026 (arXiv:2603.03283)"
ZOO = "Pointcept README, model zoo"


def _ptv3(exp: str) -> HubFile:
    return HubFile(PTV3_REPO, f"{exp}/model/model_best.pth", PTV3_REV)


def _preset(exp: str) -> tuple[tuple[str, Any], ...]:
    """``ptv3`` arguments of a released checkpoint's architecture (``PRESETS`` of
    :mod:`lightning_pc.models.ptv3`: no coordinates in the stem, Pointcept's grid, v1.5.1
    block wiring, RPE for S3DIS), without ``num_classes``."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in PTV3_PRESETS[exp].items()}
    args.pop("num_classes")
    return _kw(**args)


def _ssl(
    name: str, summary: str, builder: str, file: HubFile, paper: str, metric: str,
    inputs: Inputs = SSL_INPUTS, head: HubFile | None = None, notes: tuple[str, ...] = (),
) -> PretrainedCard:  # fmt: skip
    probe = head is not None
    pinned = all(f.pinned for f in (file, head) if f is not None)
    return PretrainedCard(
        name=name,
        summary=summary,
        builder=builder,
        kwargs=_kw(in_channels=6),
        num_classes=20 if probe else None,
        files=(file, head) if head is not None else (file,),
        key_map="pointcept_ptv3_encoder",
        inputs=inputs,
        class_names=SCANNET20 if probe else (),
        palette=SCANNET20_PALETTE if probe else (),
        metric=metric,
        licence=NC,
        paper=paper,
        notes=notes + (() if pinned else (MAIN_NOTE,)),
    )


_SONATA = HubFile(SONATA_REPO, "sonata.pth", "main")
_SONATA_SMALL = HubFile(SONATA_REPO, "sonata_small.pth", "main")
_SONATA_HEAD = HubFile(SONATA_REPO, "sonata_linear_prob_head_sc.pth", "main")
_CONCERTO = {
    "tiny": HubFile(
        CONCERTO_REPO, "concerto_tiny.pth", "main",
        "2d5ac74f11cec87ce172c53d6cd05c5d43760c787b740bfa3cdc480175e26281",
    ),
    "small": HubFile(
        CONCERTO_REPO, "concerto_small.pth", "main",
        "251441d92ac7d9cff9e0c3ae22bdf2dc416d1c9dbb7a75f1922c08bfd1a18868",
    ),
    "base": HubFile(CONCERTO_REPO, "concerto_base.pth", "main"),
    "large": HubFile(
        CONCERTO_REPO, "concerto_large.pth", "main",
        "04de4954d19b3563523f7a06254a02ed25bdf639e0ed2f12f9106e5fa9b178a7",
    ),
}  # fmt: skip
_CONCERTO_HEAD = HubFile(CONCERTO_REPO, "concerto_large_linear_prob_head_sc.pth", "main")
_UTONIA = HubFile(UTONIA_REPO, "utonia.pth", "main")
_UTONIA_HEAD = HubFile(UTONIA_REPO, "utonia_linear_prob_head_sc.pth", "main")
_CONCERTO_PRE = (
    "the hub's concerto_small/base/large are a later release than the paper's model "
    "(trained with random colour/normal drop, a pre-release of Utonia: inputs without "
    "colour or normal allowed as zeros)",
)

CARDS: tuple[PretrainedCard, ...] = (
    PretrainedCard(
        name="ptv3_scannet20",
        summary="PTv3 semantic segmentation, ScanNet v2 (20 classes)",
        builder="ptv3",
        kwargs=_preset("scannet-semseg-pt-v3m1-0-base"),
        num_classes=20,
        files=(_ptv3("scannet-semseg-pt-v3m1-0-base"),),
        key_map="pointcept_ptv3m1",
        inputs=PTV3_INPUTS,
        class_names=SCANNET20,
        palette=SCANNET20_PALETTE,
        metric=f"ScanNet20 val mIoU 77.6% ({ZOO}, scannet-semseg-pt-v3m1-0-base)",
        paper=PTV3_PAPER,
    ),
    PretrainedCard(
        name="ptv3_scannet200",
        summary="PTv3 semantic segmentation, ScanNet200 (200 classes)",
        builder="ptv3",
        kwargs=_preset("scannet200-semseg-pt-v3m1-0-base"),
        num_classes=200,
        files=(_ptv3("scannet200-semseg-pt-v3m1-0-base"),),
        key_map="pointcept_ptv3m1",
        inputs=PTV3_INPUTS,
        class_names=SCANNET200,
        palette=_rgb(class_palette(200)),
        metric=f"ScanNet200 val mIoU 35.3% ({ZOO}, scannet200-semseg-pt-v3m1-0-base)",
        paper=PTV3_PAPER,
    ),
    PretrainedCard(
        name="ptv3_s3dis_area5",
        summary="PTv3 with relative position encoding, S3DIS (13 classes, Area 5 held out)",
        builder="ptv3",
        kwargs=_preset("s3dis-semseg-pt-v3m1-0-rpe"),
        num_classes=13,
        files=(_ptv3("s3dis-semseg-pt-v3m1-0-rpe"),),
        key_map="pointcept_ptv3m1",
        inputs=PTV3_INPUTS,
        class_names=S3DIS13,
        palette=_rgb(S3DIS_PALETTE),
        metric=f"S3DIS Area 5 mIoU 73.6% ({ZOO}, s3dis-semseg-pt-v3m1-0-rpe)",
        paper=PTV3_PAPER,
        notes=(
            "trained with relative position encoding and patches of 128 voxels",
            "evaluated by Pointcept on one-point-per-voxel fragments "
            "(lightning_pc.nn.grid_sample.predict_fragments)",
        ),
    ),
    _ssl("sonata_small", "Sonata small encoder (self-supervised PT-v3m2, no head)",
         "sonata_small", _SONATA_SMALL, SONATA_PAPER, "encoder (no published probe figure)"),
    _ssl("sonata_base", "Sonata encoder (self-supervised PT-v3m2, no head)", "sonata_base",
         _SONATA, SONATA_PAPER, "ScanNet20 val mIoU 72.5% by linear probing (Sonata paper)"),
    _ssl("sonata_base_scannet20_probe", "Sonata encoder + its ScanNet20 linear-probe head",
         "sonata_base", _SONATA, SONATA_PAPER,
         "ScanNet20 val mIoU 72.5% by linear probing (Sonata paper, abstract)",
         head=_SONATA_HEAD),
    _ssl("concerto_tiny", "Concerto tiny encoder (2D-3D self-supervised PT-v3m2, no head)",
         "concerto_tiny", _CONCERTO["tiny"], CONCERTO_PAPER,
         "encoder (no published probe figure)",
         notes=("not in the concerto package's model list; published on the hub",)),
    _ssl("concerto_small", "Concerto small encoder (no head)", "concerto_small",
         _CONCERTO["small"], CONCERTO_PAPER, "encoder (no published probe figure)",
         notes=_CONCERTO_PRE),
    _ssl("concerto_base", "Concerto base encoder (no head)", "concerto_base",
         _CONCERTO["base"], CONCERTO_PAPER, "encoder (no published probe figure)",
         notes=_CONCERTO_PRE),
    _ssl("concerto_large", "Concerto large encoder (no head)", "concerto_large",
         _CONCERTO["large"], CONCERTO_PAPER,
         "ScanNet20 val mIoU 77.3% by linear probing for the paper's model (Sonata's 72.5% "
         "+ 4.8, Concerto paper, abstract)", notes=_CONCERTO_PRE),
    _ssl("concerto_large_scannet20_probe",
         "Concerto large encoder + its ScanNet20 linear-probe head", "concerto_large",
         _CONCERTO["large"], CONCERTO_PAPER,
         "ScanNet20 val mIoU 77.3% by linear probing for the paper's model (Concerto paper, "
         "abstract); the hub's files are a later release", head=_CONCERTO_HEAD,
         notes=_CONCERTO_PRE),
    _ssl("utonia_base", "Utonia encoder (cross-domain PT-v3m3 with 3D RoPE, no head)",
         "utonia_base", _UTONIA, UTONIA_PAPER,
         "ScanNet mIoU 81.1% fine-tuned (Utonia paper); 137M parameters",
         inputs=UTONIA_INPUTS,
         notes=("the only size published (utonia.pth); tiny and small have configs but no "
                "weights",)),
    _ssl("utonia_base_scannet20_probe", "Utonia encoder + its ScanNet20 linear-probe head",
         "utonia_base", _UTONIA, UTONIA_PAPER,
         "probe head published without a figure; ScanNet mIoU 81.1% fine-tuned (paper)",
         inputs=UTONIA_INPUTS, head=_UTONIA_HEAD),
)  # fmt: skip
