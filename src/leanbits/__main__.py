"""``python -m leanbits``: the same as the ``leanbits`` command (:func:`leanbits.cli.main`)."""

from leanbits.cli import main

raise SystemExit(main())
