"""`python -m lsp_server`: the same entry point as `diffill lsp`."""

import sys

from lsp_server.cli import main

sys.exit(main())
