"""Print pip constraints that pin every dependency of pyproject.toml (and the torch and dev extras) to its floor,
for ``make test-min``: the lowest versions the project allows must really work.

torch and torchvision stay as installed: this workplace's machines hold one local build of each and
reach no other (a floor of torch is checked by guarded calls, not by this run).

    python tools/floor_constraints.py > /tmp/floors.txt && pip install -e ".[torch,dev]" -c /tmp/floors.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


KEEP_INSTALLED = {"torch", "torchvision"}


def floors(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = project["dependencies"] + extras["torch"] + extras["dev"]
    pins = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", requirement.strip())
        if match is None:
            raise SystemExit(f"{requirement!r}: every dependency needs a plain '>=' floor")
        name, _, version = match.groups()
        if name.lower() not in KEEP_INSTALLED:
            pins.append(f"{name}=={version}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    print("\n".join(floors(root / "pyproject.toml")), file=sys.stdout)
