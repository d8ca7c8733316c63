"""The multi-rank tier runs only from scripts/test_multirank.sh (HUATUO_MULTIRANK=1): without it
pytest collects nothing here, so the main suite stays as fast as it was. Helpers: launching.py."""

import os

if os.environ.get("HUATUO_MULTIRANK") != "1":
    collect_ignore_glob = ["test_*.py"]
