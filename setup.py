"""One build step on top of pyproject.toml: the shipped defaults go into the wheel.

The default fleet, the fitted models, the example workload and the LLM catalog are kept once, at
the top of the source tree (``models/``, ``examples/``, ``data/``). ``build_py`` copies them into
``energyopt/_shipped/`` of the build tree, under the same relative paths, so that a plain
(non-editable) install carries them; ``energyopt.defaults`` reads them there, or in the source tree
when there is no ``_shipped/`` (a checkout, an editable install). The same list puts them into the
sdist (``get_source_files``), so a wheel built from the sdist has them too.
"""

from __future__ import annotations

import os
import shutil
from glob import glob

from setuptools import setup
from setuptools.command.build_py import build_py

#: files of the source tree that the wheel carries, as globs relative to the project root
SHIPPED = ("models/*.json", "examples/fleet.toml", "examples/workload.csv", "data/llms.csv")
#: where they go inside the package (energyopt.defaults.SHIPPED_DIR)
SHIPPED_DIR = os.path.join("energyopt", "_shipped")


def shipped_files() -> list[str]:
    files = []
    for pattern in SHIPPED:
        found = sorted(glob(pattern))
        if not found:
            raise FileNotFoundError(f"{pattern}: no file to ship (run the build from the project root)")
        files += found
    return files


class BuildPyWithShipped(build_py):
    """``build_py``, then the shipped defaults into ``build_lib/energyopt/_shipped/``."""

    def _shipped_mapping(self) -> dict[str, str]:
        return {os.path.join(self.build_lib, SHIPPED_DIR, f): f for f in shipped_files()}

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads them from the source tree
            return
        # a file dropped from the source tree must not linger from an earlier build
        shutil.rmtree(os.path.join(self.build_lib, SHIPPED_DIR), ignore_errors=True)
        for dst, src in self._shipped_mapping().items():
            self.mkpath(os.path.dirname(dst))
            self.copy_file(src, dst, preserve_mode=False)

    def get_source_files(self) -> list[str]:
        return [*super().get_source_files(), *shipped_files()]

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *self._shipped_mapping()]

    def get_output_mapping(self) -> dict[str, str]:
        return {**super().get_output_mapping(), **self._shipped_mapping()}


setup(cmdclass={"build_py": BuildPyWithShipped})
