#!/usr/bin/env python
"""Same entry point as `gridyolo explain`:

    python tools/explain.py --weights CKPT --image IMG [--labels FILE] [--layers NAMES]
"""

import sys

from gridyolo.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["explain", *sys.argv[1:]]))
