"""``python -m grader`` is the ``jitgrade`` command."""

from grader.cli import main

raise SystemExit(main())
