#!/usr/bin/env python
"""Same entry point as `gridyolo detect`:

    python tools/detect.py --weights CKPT_OR_TORCHSCRIPT --source IMAGE|DIR|GLOB|VIDEO|0|URL [--save-json]
"""

import sys

from gridyolo.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["detect", *sys.argv[1:]]))
