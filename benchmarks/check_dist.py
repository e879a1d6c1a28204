"""What a published release must contain: the license, the typing marker, every package,
the compiled NumPy kernels (the wheel) and their sources (the sdist), and one version
everywhere.

    python benchmarks/check_dist.py dist/

Exits 1 naming what is missing from the wheel or the sdist in ``dist/``.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGES = (
    "softmax_dispatch",
    "softmax_dispatch/conformance",
    "softmax_dispatch/bench",
    "softmax_dispatch_numpy",
    "softmax_dispatch_cupy",
    "softmax_dispatch_interop",
)


def problems(dist: Path) -> list[str]:
    root = Path(__file__).resolve().parents[1]
    version = re.search(
        r'__version__ = "([^"]+)"', (root / "softmax_dispatch/_version.py").read_text()
    ).group(1)
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist}, found {wheels + sdists}"]
    out = []
    wheel = zipfile.ZipFile(wheels[0]).namelist()
    if f"-{version}-" not in wheels[0].name:
        out.append(f"wheel {wheels[0].name} is not version {version}")
    need = [
        "softmax_dispatch/py.typed",
        "softmax_dispatch/conformance/pytest.ini",
        "softmax_dispatch_cupy/cuda/softmax.cu",
        *(f"{p}/__init__.py" for p in PACKAGES),
    ]
    out += [f"wheel lacks {n}" for n in need if n not in wheel]
    if not any(n.startswith("softmax_dispatch_numpy/_native.") for n in wheel):
        out.append("wheel lacks the compiled NumPy kernels (softmax_dispatch_numpy/_native)")
    if not any(n.endswith("/licenses/LICENSE") for n in wheel):
        out.append("wheel lacks the LICENSE file (dist-info/licenses/LICENSE)")
    meta = next((n for n in wheel if n.endswith(".dist-info/METADATA")), None)
    text = zipfile.ZipFile(wheels[0]).read(meta).decode() if meta else ""
    if f"Version: {version}" not in text or "License-Expression: MIT" not in text:
        out.append("wheel METADATA lacks the version or License-Expression: MIT")
    with tarfile.open(sdists[0]) as tar:
        names = tar.getnames()
    for n in (
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "softmax_dispatch/py.typed",
        "softmax_dispatch_cupy/cuda/softmax.cu",
        "CMakeLists.txt",
        "backends/softmax_dispatch_numpy/_csrc/kernels.cpp",
    ):
        if not any(name.endswith("/" + n) for name in names):
            out.append(f"sdist lacks {n}")
    return out


if __name__ == "__main__":
    found = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "dist"))
    for p in found:
        print(f"check_dist: {p}", file=sys.stderr)
    print("check_dist: wheel and sdist complete" if not found else "", end="")
    print()
    sys.exit(1 if found else 0)
