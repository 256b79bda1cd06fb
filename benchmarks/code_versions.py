"""Load a package's source files, from the working tree or an older git revision, as a separate importable package.

Benchmarks use it to time today's code next to the code of an earlier revision in one run (same process, same
inputs), and to run a self-contained model folder without installing lemart_hf.
"""

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def sources_at_revision(rev: str, paths: dict[str, str]) -> dict[str, str]:
    """{file name: text} of the repository paths ``paths`` ({file name: path from the repo root}) at ``rev``."""
    return {
        name: subprocess.check_output(["git", "show", f"{rev}:{path}"], cwd=REPO, text=True)
        for name, path in paths.items()
    }


def import_as_package(package: str, sources: dict[str, str], module: str) -> ModuleType:
    """Write ``sources`` ({file name: text}) as the package ``package`` in a temporary folder; import its ``module``.

    The files' relative imports (``from .masks import ...``) resolve inside the new package, so it is independent of
    whatever version of the code is installed.
    """
    folder = Path(tempfile.mkdtemp(prefix="bench_code_")) / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name, text in sources.items():
        (folder / name).write_text(text)
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(f"{package}.{module}")


def package_name(prefix: str, rev: str) -> str:
    """A valid package name for code of revision ``rev`` (e.g. HEAD~3)."""
    return f"{prefix}_{''.join(c if c.isalnum() else '_' for c in rev)}"
