"""``python -m engine.serve ...`` = ``diffill serve ...``."""

from __future__ import annotations

import sys

from engine.serve import main

sys.exit(main())
