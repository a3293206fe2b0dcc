"""``python -m llmweb_plugin.cli``: the ``llmweb`` command without the console script."""

import sys

from . import main

sys.exit(main())
