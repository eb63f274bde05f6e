"""Rebuild ``offline_page.html``, the page template of ``dvc plots show`` / ``dvc plots diff`` (``.dvc/config``:
``plots.html_template``), with the vega, vega-lite and vega-embed builds inlined from the npm registry.

DVC's default page loads these three scripts from a CDN, so ``dvc plots show`` renders a blank page offline. This
page holds the same versions DVC asks for (dvc-render's ``VegaRenderer.SCRIPTS``) and leaves out DVC's own script
placeholder. Run it where ``npm`` reaches the registry (``python vendor/vega/build.py``), or give ``--packed DIR``
with the three ``npm pack`` tarballs already there. Written by hand: no package ships such a page.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = [("vega", "5.20.2", "build/vega.min.js"), ("vega-lite", "5.2.0", "build/vega-lite.min.js"),
            ("vega-embed", "6.18.2", "build/vega-embed.min.js")]
HERE = Path(__file__).resolve().parent

HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>advhash: DVC plots</title>
    <!-- The page template of `dvc plots show` / `dvc plots diff` (.dvc/config: plots.html_template). It inlines
         the vega, vega-lite and vega-embed builds DVC would load from a CDN (the same versions), so the page
         renders offline; DVC's own script tags are left out on purpose. Rebuilt by vendor/vega/build.py. -->
"""
TAIL = """
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    <h2>advhash: curves at 32 bits, then every figure of the reports</h2>
    {plot_divs}
</body>
</html>
"""


def member(tarball: Path, name: str) -> str:
    """The text of ``package/<name>`` in an ``npm pack`` tarball."""
    with tarfile.open(tarball) as archive:
        return archive.extractfile(f"package/{name}").read().decode("utf-8")


def build(packed: Path) -> str:
    """The page, from the tarballs ``<name>-<version>.tgz`` in ``packed``."""
    scripts = []
    for name, version, script in PACKAGES:
        tarball = packed / f"{name}-{version}.tgz"
        if not tarball.is_file():
            raise FileNotFoundError(f"{tarball} is missing: run `npm pack {name}@{version}` in {packed}")
        code, licence = member(tarball, script), member(tarball, "LICENSE").replace("--", "- -")
        if "</script" in code or any("{" + key + "}" in code for key in ("plot_divs", "scripts", "refresh_tag")):
            raise ValueError(f"{name} {version}: the build holds text that would break the page; not inlined")
        scripts.append(f"<!-- {name} {version} from the npm registry ({script}); its licence:\n{licence}-->\n"
                       f"<script type=\"text/javascript\">\n{code}\n</script>")
    return HEAD + "\n".join(scripts) + TAIL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packed", type=Path, help="a folder with the three npm pack tarballs (default: run npm)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        packed = args.packed or Path(folder)
        if args.packed is None:
            subprocess.run(["npm", "pack", *(f"{n}@{v}" for n, v, _ in PACKAGES)], cwd=packed, check=True)
        (HERE / "offline_page.html").write_text(build(packed), encoding="utf-8")
    print(f"wrote {HERE / 'offline_page.html'}")


if __name__ == "__main__":
    main()
