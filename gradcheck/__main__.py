"""``python -m gradcheck``: the same as the ``gradcheck`` command."""

import sys

from gradcheck.gate.cli import main

sys.exit(main())
