"""gridyolo: a readable YOLOv1-style object detector and the pipeline around it.

The folders follow the data flow, and imports only point down this list (docs/ARCHITECTURE.md):

- ``errors``, ``inputs``, ``files``: one-line errors, checks at the edge, atomic files and run folders.
- ``core``: the grid contract (what the head's ``[N, S, S, B*5 + C]`` numbers mean), the loss, decode,
  and the letterbox geometry between an image and the model input.
- ``models``: backbones, the grid head, ``Detector``.
- ``data``: dataset readers, checks, conversion, training augmentation and loaders.
- ``deploy``: checkpoints, the inference module, exports, ONNX Runtime, and ``load_predictor``, the one
  way to open a weights file.
- ``evaluation``: COCO and VOC metrics of any predictor or predictions file.
- ``training``: the LightningModule, its optimizer, callbacks and the ``train`` command.
- ``apps``: the ``gridyolo`` command line and what only it does (detect, explain, summary, demo).
"""

__version__ = "0.1.0"
