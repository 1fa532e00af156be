"""``python -m hub.cli``: the ``chronohub`` command."""

import sys

from hub.cli import main

sys.exit(main.main())
