"""The ``gradcheck`` command: a CI gate over configured or built-in layers.

``cli`` parses the command line, ``config`` reads the project's
configuration, ``targets`` resolves what to check, ``suite`` holds the
built-in cases, ``run`` runs them (table, progress, JSON), ``junit`` and
``annotations`` (source lines, GitHub workflow commands) and ``plot`` write
the other outputs. The table itself is :mod:`gradcheck.render`'s, shared with
``str(report)`` and the pytest message.
"""
