"""``python -m hubclient project …``: the client without the hub's command."""

import sys

from hubclient import cli

sys.exit(cli.main())
