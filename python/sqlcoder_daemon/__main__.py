"""``python -m sqlcoder_daemon``: the same as the ``sqlcoder-daemon`` command."""

import sys

from .cli import main

sys.exit(main())
