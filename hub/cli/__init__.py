"""The ``chronohub`` command (``main``) and its subcommands: ``events``, ``password``, ``users``;
progress bars for the long ones."""
