"""`python -m bot.cli`: the `memberbot` console script without installing it."""

import sys

from bot.cli import main

sys.exit(main())
