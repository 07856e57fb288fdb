"""Renderings of the canonical report (a dict built by ``SubmissionResult.to_dict``).

JSON is canonical; every other format (terminal text, HTML, JUnit XML, GitHub annotations,
Gradescope results, the CSV gradebook) is derived from the same dict and says the same thing.
Every writer renders the report through ``sanitize`` first: student-controlled values (NaN, escape
sequences, lone surrogates, deep nesting, huge strings) never make a writer raise or reach a terminal.
"""
