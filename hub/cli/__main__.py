"""``python -m hub.cli``: the ``chronohub`` command."""

import sys

from hub.cli import entry

sys.exit(entry.main())
