"""The ``gradcheck`` command: a CI gate over configured or built-in layers.

``cli`` parses the command line, ``config`` reads the project's
configuration, ``targets`` resolves what to check, ``suite`` holds the
built-in cases, ``run`` runs them (table, progress, JSON), ``junit`` and
``plot`` write the other outputs.
"""
