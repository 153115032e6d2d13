#!/usr/bin/env python
"""Same entry point as `gridyolo train`:

    python tools/train.py --config configs/bccd_lite0.yaml [--trainer.max_epochs 3 ...]
"""

import sys

from gridyolo.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
