"""Importing the CLI, loading every plugin and listing them never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_listing_plugins_does_not_import_torch() -> None:
    code = (
        "import sys, json, himari.cli\n"
        "from himari.plugin.manager import get_plugins\n"
        "from himari.plugin.listing import list_plugins, show_plugin\n"
        "p = get_plugins()\n"
        "rows = list_plugins(p)['plugins']\n"
        "show_plugin(p, 'baseline-mlp')\n"
        "mlp = [r for r in rows if r['name'] == 'baseline-mlp'][0]\n"
        "print(json.dumps([mlp['parameters']['total'], 'torch' in sys.modules, len(rows)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    total, torch_loaded, n = __import__("json").loads(out)
    assert total == 16_643
    assert torch_loaded is False
    assert n >= 7
