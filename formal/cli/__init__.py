"""The ``formal`` command: one module per subcommand."""
