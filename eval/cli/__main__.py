"""`python -m antidistill.eval.cli`: the same as the `antidistill` command."""
import sys

from . import main

sys.exit(main())
