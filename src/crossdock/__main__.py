"""``python -m crossdock`` is the ``crossdock`` command."""

import sys

from crossdock.cli.main import main

sys.exit(main())
