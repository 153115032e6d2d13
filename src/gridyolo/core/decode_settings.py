"""The decode settings a predictor runs with: one typed value, resolved once where weights are loaded.

No torch here (the torch-free ONNX runtime uses it too). The rule for the score threshold: the one the
user gave (``--conf``), else the model's own (the F1-optimal threshold of its validation split, stored
in the checkpoint and carried into exports), else ``DEFAULT_CONF_THRESHOLD``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_CONF_THRESHOLD = 0.25
DEFAULT_IOU_THRESHOLD = 0.45
DEFAULT_MAX_DETECTIONS = 100
CONF_SOURCES = ("--conf", "the model's F1-optimal threshold", "the default")


@dataclass(frozen=True)
class DecodeSettings:
    """Score threshold, NMS IoU threshold and detections kept per image, with where the threshold came
    from (one of ``CONF_SOURCES``)."""

    conf_threshold: float = DEFAULT_CONF_THRESHOLD
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    max_detections: int = DEFAULT_MAX_DETECTIONS
    conf_source: str = "the default"

    @classmethod
    def resolve(
        cls,
        given_conf: float | None,
        stored_conf: float | None,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
    ) -> DecodeSettings:
        """The settings in force for a model whose stored threshold is ``stored_conf`` (``None``: none)."""
        if given_conf is not None:
            conf, source = float(given_conf), CONF_SOURCES[0]
        elif stored_conf is not None:
            conf, source = float(stored_conf), CONF_SOURCES[1]
        else:
            conf, source = DEFAULT_CONF_THRESHOLD, CONF_SOURCES[2]
        return cls(conf, float(iou_threshold), int(max_detections), source)

    def info(self) -> dict:
        """The settings as ``Predictor.info`` and the run summaries report them."""
        return asdict(self)


def resolve_conf_threshold(given: float | None, stored: float | None) -> float:
    """The score threshold in force (``DecodeSettings.resolve``'s rule), where only it is needed."""
    return DecodeSettings.resolve(given, stored).conf_threshold
