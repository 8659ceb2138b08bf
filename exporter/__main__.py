"""``python -m exporter`` is the same as ``depwatch``."""

from exporter.cli import main

raise SystemExit(main())
