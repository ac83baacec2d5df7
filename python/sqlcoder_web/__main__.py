"""``python -m sqlcoder_web``: the same as ``sqlcoder-web``."""

import sys

from .cli import main

sys.exit(main())
