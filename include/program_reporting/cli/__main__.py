"""`python -m program_reporting.cli`: the console script without its entry point."""

import sys

from program_reporting.cli import main

sys.exit(main())
