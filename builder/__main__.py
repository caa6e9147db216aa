"""`python -m builder` runs the pvinstall command line."""

import sys

from builder.cli import main

sys.exit(main())
