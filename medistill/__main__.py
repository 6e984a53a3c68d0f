"""``python -m medistill`` = the ``medistill`` command."""
import sys

from .cli import main

sys.exit(main())
