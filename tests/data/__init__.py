"""Data tests, beside the scripts that write their fixtures.

Each ``tests/data/<name>/`` folder holds a script that writes a tiny on-disk copy of a dataset
(``make_fixture.py``; a few folders hold others, such as ``faults/make_faults.py``). The scripts
also run on their own (``python tests/data/s3dis/make_fixture.py OUT_DIR``); tests load them with
:func:`load_fixture`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DATA = Path(__file__).resolve().parent


def load_fixture(name: str, script: str = "make_fixture.py") -> ModuleType:
    """The fixture script ``tests/data/<name>/<script>`` as a module.

    It is loaded once per process, as ``tests.data.<name>.<script stem>`` in ``sys.modules``;
    every later call (from any test file) returns that same module object.

    Raises:
        FileNotFoundError: if ``name`` is not a folder under ``tests/data`` holding ``script``;
            the message names the file looked for and lists the fixture scripts there are.
    """
    if not name or Path(name).name != name or Path(script).name != script:
        raise ValueError(
            f"load_fixture({name!r}, {script!r}): name must be one folder under {DATA} "
            "and script one file in it, not a path"
        )
    path = DATA / name / script
    module_name = f"{__name__}.{name}.{Path(script).stem}"
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return loaded
    if not path.is_file():
        scripts = sorted(f"{p.parent.name}/{p.name}" for p in DATA.glob("*/make_*.py"))
        raise FileNotFoundError(
            f"no fixture script {path}: load_fixture({name!r}, {script!r}) looks for "
            f"tests/data/{name}/{script}; the fixture scripts under tests/data are "
            f"{', '.join(scripts)}"
        )
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load fixture script {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # registered first, as an import would (dataclasses, pickle)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]  # a failed load is not cached: the next call raises again
        raise
    return module
