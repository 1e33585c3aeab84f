"""``python -m deepens.cli``: the command line."""

import sys

from deepens.cli import main

sys.exit(main())
