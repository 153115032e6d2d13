#!/usr/bin/env python
"""Same entry point as `gridyolo eval`:

    python tools/eval.py --weights CKPT --data ROOT --format coco|voc|yolo --split NAME
"""

import sys

from gridyolo.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
