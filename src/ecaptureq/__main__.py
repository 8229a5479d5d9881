"""``python -m ecaptureq`` runs the command line."""

import sys

from ecaptureq.cli.main import main

sys.exit(main())
