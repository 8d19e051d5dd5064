"""`python -m streams.cli`: the `personas` command."""

import sys

from streams.cli.main import main

sys.exit(main())
