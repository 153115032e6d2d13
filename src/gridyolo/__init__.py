"""gridyolo: a readable YOLOv1-style object detector and the pipeline around it."""

__version__ = "0.1.0"
