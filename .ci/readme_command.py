"""Print the README's test command (the fenced block after "Run every test"), so CI runs exactly
what a new user copies from the README, and nothing else."""

from __future__ import annotations

import re
import sys
from pathlib import Path


def readme_test_command(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    match = re.search(r"^Run every test.*?```bash\n(.+?)\n```", text, re.S | re.M)
    if match is None:
        raise SystemExit(f"{readme}: no fenced bash block after 'Run every test'")
    return match.group(1).strip()


if __name__ == "__main__":
    print(readme_test_command(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")))
