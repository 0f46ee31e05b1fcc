from leanbits.cli import main

raise SystemExit(main())
