"""The declaration of behaviour aggregates lives in gendetect.aggregates (the
schema parses `aggregates:` with it, and gendetect.schema may not import the
features package, which imports the schema: no import cycles between
sibling modules). This module re-exports it under its first name."""

from gendetect.aggregates import *  # noqa: F403
