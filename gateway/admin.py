"""``python -m gateway.admin``: the admin CLI's old module path, kept for one release; it is now
``python -m admin`` (``admin/cli.py``)."""

import sys

from admin.cli import main

if __name__ == "__main__":
    print(
        "note: `python -m gateway.admin` is now `python -m admin`; the old name goes in the next release",
        file=sys.stderr,
    )
    raise SystemExit(main())
