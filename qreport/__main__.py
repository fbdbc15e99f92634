"""Run the qreport command line: ``python -m qreport``."""

import sys

from qreport.cli import main

sys.exit(main())
