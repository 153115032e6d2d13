"""``python -m gridyolo``: the ``gridyolo`` command."""

from gridyolo.apps.cli import main

raise SystemExit(main())
