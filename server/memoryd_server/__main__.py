"""``python -m memoryd_server``: the same as the ``memoryd`` command."""

import sys

from memoryd_server.cli import main

sys.exit(main())
