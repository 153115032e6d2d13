#!/usr/bin/env python
"""Same entry point as `gridyolo export`:

    python tools/export.py --weights CKPT --format torchscript|onnx [--out FILE]   |   --info FILE
"""

import sys

from gridyolo.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
