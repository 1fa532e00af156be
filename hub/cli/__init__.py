"""The ``chronohub`` command: ``entry`` (hands ``project`` and ``login`` to the projects client,
hubclient, before the hub is imported), ``main`` and its subcommands (``events``,
``password``, ``users``, ``projects``), progress bars for the long ones."""
