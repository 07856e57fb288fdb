"""The similarity report (``jitgrade similarity``, ``jitgrade grade --similarity``): which submissions
share code with each other, with the master solution, with past offerings or with known public
solutions. Evidence for a human to review, never a verdict.

- ``extract``: the code a student wrote (solution cells, the template's lines left out);
- ``fingerprint``: token normalization and copydetect's winnowing;
- ``compare``: the inverted index, pair scores and groups;
- ``run``: the corpora and the executors; ``report``: the CSV and the HTML pages.

This module stays free of imports: the command line reads the names below without loading the rest.
"""

INDEX = "similarity.html"
CSV = "similarity.csv"
PAGES = "similarity"  # folder of the side-by-side pages
OUTPUTS = (INDEX, CSV, PAGES)  # what a report writes at the top of its folder
