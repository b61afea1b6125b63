"""tests/README.md's table of bad inputs: every row names a test file that exists and that contains
each quoted case, so no message in the catalogue goes unchecked."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testlib import ROOT, check, finish  # noqa: E402

rows = [line for line in open(os.path.join(ROOT, "tests", "README.md")) if line.startswith("| ") and "`tests/" in line]
check("the catalogue has rows", len(rows) >= 10, len(rows))
for row in rows:
    checked_by = row.rstrip().rstrip("|").split(" | ")[-1]
    path = re.match(r"`(tests/[^`]+)`", checked_by)
    cases = re.findall(r'"([^"]+)"', checked_by)
    source = open(os.path.join(ROOT, path.group(1))).read() if path and os.path.exists(os.path.join(ROOT, path.group(1))) else ""
    missing = [c for c in cases if c not in source]
    check(f"catalogue row checked by {path.group(1) if path else '?'}: {cases[0] if cases else '?'}",
          source and cases and not missing, f"no test file or missing cases: {missing}\n{row}")
finish()
