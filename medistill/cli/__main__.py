"""``python -m medistill.cli`` = the ``medistill`` command."""
import sys

from . import main

sys.exit(main())
