"""Imports run one way: runner -> phantom_theory, never back, and never torch."""

import subprocess
import sys


def test_phantom_theory_imports_neither_runner_nor_the_training_stack():
    code = (
        "import sys, pkgutil, importlib, phantom_theory\n"
        "for m in pkgutil.walk_packages(phantom_theory.__path__, 'phantom_theory.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'transformers', 'peft', 'runner') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
