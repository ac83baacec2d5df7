"""``python -m sqlcoder_dev.tiny``."""

import sys

from .cli import main

sys.exit(main())
