"""Training with PyTorch Lightning: ``GridYoloModule`` (loss, optimizer, EMA, validation mAP; in
``module``), the optimizer and schedule (``optim``), the callbacks that keep a run's records
(``callbacks``) and ``gridyolo train`` on LightningCLI (``cli``). Nothing below this layer imports
Lightning except ``data.datamodule``, which only training loads."""
