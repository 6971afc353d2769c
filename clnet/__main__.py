"""`python -m clnet ...` is the `clnet` command."""
import sys

from .cli import main

sys.exit(main())
