"""DSR and the benchmark harness (`dsr.run` trains one configuration)."""

from pathlib import Path

# the one repository root: data/, results/, workflow/ and the git checkout hang off it
REPO_ROOT = Path(__file__).resolve().parent.parent
