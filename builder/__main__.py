"""`python -m builder` runs the pvinstall command line."""

import sys

from builder.entry import main

sys.exit(main())
