"""``python -m gradcheck``: the same as the ``gradcheck`` command."""

import sys

from gradcheck.cli import main

sys.exit(main())
