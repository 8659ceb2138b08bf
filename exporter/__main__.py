"""``python -m exporter`` is the same as ``depwatch``."""

from exporter.entry import main

raise SystemExit(main())
