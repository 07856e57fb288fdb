"""Checks: the registry (base), the check modules per group of problems, and the runner.

Kept empty of imports on purpose: importing the check modules imports the Numba reference,
and callers that only need the result types (``grader.checks.base``) should not pay for it.
Use ``grader.checks.runner`` to plan and run checks.
"""
