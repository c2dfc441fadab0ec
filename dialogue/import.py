"""``python -m dialogue.import orders|products|faq FILE``: see dialogue/importer.py."""

import sys

from dialogue.importer import main

sys.exit(main())
