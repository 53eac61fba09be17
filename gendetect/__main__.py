"""`python -m gendetect ...` runs the CLI."""

from gendetect.cli import main

raise SystemExit(main())
