"""The grid contract: what the head's raw ``[N, S, S, B*5 + C]`` numbers mean (``grid``), the YOLOv1
loss that trains them (``loss``), their decoding into boxes with NMS (``decode``), and where an image
lands in the square model input (``letterbox``). Torch, torchvision and OpenCV only: everything above
builds on these definitions, and nothing here knows about datasets, training or files."""
