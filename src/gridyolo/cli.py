"""The ``gridyolo`` command: parses arguments and calls the library; errors become one line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gridyolo import __version__
from gridyolo.errors import GridyoloError


def _data_check(args: argparse.Namespace) -> int:
    from gridyolo.data.check import dataset_report, format_report
    from gridyolo.data.readers import build_reader

    roots = args.root if args.format == "voc" else args.root[0]
    if args.format != "voc" and len(args.root) > 1:
        raise GridyoloError(f"--format {args.format} takes one ROOT, got {len(args.root)}")
    classes = args.classes.split(",") if args.classes else None
    report = dataset_report(build_reader(roots, args.format, args.split, classes=classes))
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from gridyolo.models import build_detector
    from gridyolo.summary import format_summary, model_summary

    model = build_detector(args.backbone, num_classes=args.classes, grid_size=args.grid, num_boxes=args.boxes)
    summary = model_summary(model, args.img_size)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridyolo", description="A readable YOLOv1-style detector.")
    parser.add_argument("--version", action="version", version=f"gridyolo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="count images, boxes and classes; list clipped and dropped boxes")
    check.add_argument("root", nargs="+", help="dataset root (VOC: several roots are concatenated; YOLO: data YAML)")
    check.add_argument("--format", required=True, choices=("coco", "voc", "yolo"))
    check.add_argument(
        "--split", default=None, help="COCO instances_SPLIT.json, VOC ImageSets/Main/SPLIT.txt, YOLO key"
    )
    check.add_argument("--classes", default=None, help="VOC: comma-separated class list (default: found in the files)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_data_check)

    summary = commands.add_parser("summary", help="per-layer shapes, parameters, FLOPs and receptive field")
    summary.add_argument("--backbone", default="resnet18")
    summary.add_argument("--img-size", type=int, default=448)
    summary.add_argument("--grid", type=int, default=7)
    summary.add_argument("--boxes", type=int, default=2)
    summary.add_argument("--classes", type=int, default=20)
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    summary.set_defaults(func=_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GridyoloError as exc:
        print(f"gridyolo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
