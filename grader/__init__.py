"""jitgrade's grader: runs untrusted student notebooks in a sandbox and grades them against ``reference``."""

__version__ = "0.1.0"
