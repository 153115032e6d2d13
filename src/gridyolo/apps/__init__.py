"""The ``gridyolo`` command line (``cli``) and the commands that only it needs: ``detect`` on images,
folders, videos and cameras (with ``sources`` and ``drawing``), ``explain``, ``summary`` and ``demo``.
``cli`` imports each command's module only when that command runs, so ``gridyolo detect`` never
loads Lightning or albumentations."""
