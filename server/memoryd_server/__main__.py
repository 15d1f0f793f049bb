"""``python -m memoryd_server``: the same as the ``memoryd`` command."""

import sys

from memoryd_server.entry import main

sys.exit(main())
