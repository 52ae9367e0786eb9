"""Data flows one way: no module imports one that comes later in the pipeline, and nothing cycles.

Every import form counts: ``from .x import y``, ``from . import x``, ``from .. import x`` (in a
subpackage), ``import energyopt.x``, ``from energyopt import x`` and ``from energyopt.x import y``,
at module level or inside a function. Importing a name of the package facade (``from . import
__version__``) is an import of ``__init__``, the last module of all.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PKG = ROOT / "energyopt"

# A module may import only modules of its own rank or lower. A rank whose module does not exist
# (yet) is skipped; a module without a rank fails the test.
RANK = {
    "errors": 0, "schema": 0, "accounting": 0, "version": 0, "progress": 0,
    "defaults": 1, "io": 1, "partitions": 1, "fleet": 1, "writers": 1, "signals": 1, "caps": 1,
    "fit": 2, "modelstore": 2, "characterize": 2, "inputs": 2, "slots": 2, "timeslots": 2,
    "problem": 3,
    "formulation": 4, "diagnose": 4,
    "solvers": 5,
    "packing": 5, "enginesim": 5,
    "methods": 6, "check": 6,
    "schedule": 7,
    "plan": 9,
    "compare": 10, "sweep": 10, "explain": 10, "executors": 10, "distributed": 10,
    "report": 11, "replay": 11, "study": 11, "campaign": 11,
    "cli": 12, "__init__": 12, "display": 12,
}

# pure modules: they import nothing of energyopt
PURE = {"errors", "schema", "accounting", "version", "progress"}

# libraries only some commands need: CBC's PuLP and CP-SAT's OR-Tools when asked for
# (--solver cbc|cpsat), matplotlib for --report and plots, scikit-learn for fit
OPTIONAL = ("ortools", "pulp", "matplotlib", "sklearn")
# heavy libraries that `energyopt --help` must not load
HEAVY = ("pandas", "numpy", "scipy", *OPTIONAL)


def package_modules(pkg: Path) -> set[str]:
    """Top-level modules and subpackages of the package in ``pkg`` (``__init__`` for the package)."""
    mods = {p.stem for p in pkg.glob("*.py")}
    mods |= {p.name for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return mods


def module_of(path: Path, pkg: Path) -> str:
    """The top-level module a file belongs to: ``io`` for io.py, ``solvers`` for solvers/cpsat.py."""
    parts = path.relative_to(pkg).parts
    return parts[0].removesuffix(".py")


def internal_imports(path: Path, pkg: Path, package: str = "energyopt") -> set[str]:
    """The package's top-level modules that the file at ``path`` imports, in every form.

    A name imported from the package itself that is not one of its modules (``from . import
    __version__``, ``from energyopt import plan``) counts as an import of ``__init__``.
    """
    modules = package_modules(pkg)
    here = list(path.relative_to(pkg).parts[:-1])  # the file's package, below the top one

    def named(names: list[str]) -> set[str]:
        return {n if n in modules else "__init__" for n in names}

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package:
                    out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            imported = [a.name for a in node.names]
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != package:
                    continue
                out |= {parts[1]} if len(parts) > 1 else named(imported)
                continue
            up = node.level - 1
            if up > len(here):
                raise AssertionError(f"{path}: relative import beyond the top-level package")
            full = here[: len(here) - up] + (node.module.split(".") if node.module else [])
            out |= {full[0]} if full else named(imported)
    return out


def import_graph(pkg: Path, package: str = "energyopt") -> dict[str, set[str]]:
    """Top-level module -> the other top-level modules it imports (a subpackage's files merged)."""
    graph: dict[str, set[str]] = {m: set() for m in package_modules(pkg)}
    for path in pkg.rglob("*.py"):
        me = module_of(path, pkg)
        graph[me] |= internal_imports(path, pkg, package) - {me}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def violations(pkg: Path, rank: dict[str, int], package: str = "energyopt", pure: set[str] = PURE) -> list[str]:
    """Everything wrong with the package's layering: modules without a rank, imports of a module
    of a higher rank, imports in a pure module, and cycles. Empty when the arrows all point down."""
    graph = import_graph(pkg, package)
    out = [f"{m} has no rank: add it to RANK" for m in sorted(graph) if m not in rank]
    for m in sorted(graph):
        if m in pure and graph[m]:
            out.append(f"{m} must import nothing of {package}, imports {', '.join(sorted(graph[m]))}")
        for n in sorted(graph[m]):
            if m in rank and n in rank and rank[n] > rank[m]:
                out.append(f"{m} (rank {rank[m]}) imports {n} (rank {rank[n]}): the arrow points backwards")
    cycle = find_cycle(graph)
    if cycle:
        out.append("import cycle: " + " -> ".join(cycle))
    return out


def test_no_reversed_arrows_and_no_cycles():
    assert violations(PKG, RANK) == []


# --- the checker itself, on synthetic packages ---------------------------------------------
def make_package(tmp_path: Path, files: dict[str, str], name: str = "pkg") -> Path:
    pkg = tmp_path / name
    for rel, text in {"__init__.py": "", **files}.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return pkg


SYN_RANK = {"low": 0, "mid": 1, "high": 2, "sub": 1, "__init__": 3}


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"low.py": "from .high import f\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "from . import high\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "import pkg.high\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "import pkg.high as h\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "from pkg import high\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "from pkg.high import f\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"low.py": "def g():\n    from .high import f\n", "high.py": ""}, "low (rank 0) imports high (rank 2)"),
        ({"mid.py": "from . import __version__\n"}, "mid (rank 1) imports __init__ (rank 3)"),
        ({"mid.py": "import pkg\n"}, "mid (rank 1) imports __init__ (rank 3)"),
        ({"sub/__init__.py": "", "sub/a.py": "from ..high import f\n", "high.py": ""}, "sub (rank 1) imports high (rank 2)"),
        ({"sub/__init__.py": "", "sub/a.py": "from .. import high\n", "high.py": ""}, "sub (rank 1) imports high (rank 2)"),
        ({"sub/__init__.py": "", "sub/a.py": "from .. import __version__\n"}, "sub (rank 1) imports __init__ (rank 3)"),
        ({"odd.py": ""}, "odd has no rank"),
        ({"low.py": "from .mid import f\n", "mid.py": "", "high.py": ""}, "low (rank 0) imports mid (rank 1)"),
        ({"mid.py": "from .sub import f\n", "sub/__init__.py": "from ..mid import g\n"}, "import cycle: mid -> sub -> mid"),
    ],
)
def test_the_checker_catches(tmp_path, files, expected):
    found = violations(make_package(tmp_path, files), SYN_RANK, "pkg", pure=set())
    assert any(expected in v for v in found), found


def test_the_checker_passes_downward_arrows_and_skips_missing_ranks(tmp_path):
    pkg = make_package(tmp_path, {
        "high.py": "from .mid import f\nfrom . import low\nimport pkg.low\nfrom pkg.mid import g\n",
        "mid.py": "from .low import f\nimport os\nfrom os import path\n",
        "low.py": "",
        "sub/__init__.py": "from .a import f\n",
        "sub/a.py": "from . import b\nfrom ..low import f\n",
        "sub/b.py": "",
    })
    assert violations(pkg, {**SYN_RANK, "not_there_yet": 5}, "pkg", pure=set()) == []
    assert internal_imports(pkg / "sub" / "a.py", pkg, "pkg") == {"sub", "low"}


def test_the_checker_holds_pure_modules_to_no_internal_import(tmp_path):
    pkg = make_package(tmp_path, {"low.py": "from .mid import f\n", "mid.py": ""})
    assert "low must import nothing of pkg, imports mid" in violations(pkg, {**SYN_RANK, "mid": 0}, "pkg", pure={"low"})


# --- the facade and the start-up ------------------------------------------------------------
def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout


def test_cli_and_facade_import_no_heavy_library():
    out = _python(f"import sys, energyopt, energyopt.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert out.strip() == ""


def _solve_probe(args: list[str]) -> tuple[list[str], int]:
    """``energyopt solve ARGS`` in a fresh process: the optional libraries it loaded, and the
    processes it started (forks, and ``subprocess`` children such as CBC)."""
    code = textwrap.dedent(f"""
        import os, runpy, subprocess, sys
        started = []
        fork, popen_init = os.fork, subprocess.Popen.__init__
        def counted_fork():
            started.append("fork")
            return fork()
        def counted_popen(self, *a, **k):
            started.append("popen")
            popen_init(self, *a, **k)
        os.fork, subprocess.Popen.__init__ = counted_fork, counted_popen
        sys.argv = ["energyopt", "solve", *{args!r}]
        try:
            runpy.run_module("energyopt.cli", run_name="__main__")
        except SystemExit as exc:
            assert not exc.code, exc.code
        print("loaded:", *[m for m in {OPTIONAL!r} if m in sys.modules])
        print("started:", len(started))
    """)
    lines = _python(code).splitlines()
    loaded = next(ln for ln in lines if ln.startswith("loaded:")).split()[1:]
    started = int(next(ln for ln in lines if ln.startswith("started:")).split()[1])
    return loaded, started


@pytest.fixture(scope="module")
def small_workload(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("startup") / "w.csv"
    path.write_text("".join((ROOT / "examples" / "workload.csv").read_text().splitlines(keepends=True)[:61]))
    return path


def test_default_solve_loads_no_optional_library_and_starts_no_process(small_workload, tmp_path):
    """The default path (HiGHS through scipy, no time limit) needs neither PuLP nor OR-Tools to find
    its backend, no plotting or fitting library, and no child process."""
    loaded, started = _solve_probe([str(small_workload), "-o", str(tmp_path / "plan"), "--quiet"])
    assert loaded == [] and started == 0
    assert (tmp_path / "plan" / "summary.json").is_file()


def test_the_solve_probe_sees_an_optional_backend(small_workload, tmp_path):
    """The probe above can fail: CBC is PuLP's, and under a time limit a MILP (here the one that
    closes the accuracy floor's gap) runs in a child the watchdog can stop."""
    loaded, started = _solve_probe([str(small_workload), "-o", str(tmp_path / "plan"), "--quiet", "--solver", "cbc",
                                    "--min-mean-accuracy", "0.52", "--time-limit", "30"])
    assert "pulp" in loaded and started >= 1


def test_facade_exposes_every_name_lazily():
    import energyopt

    assert set(energyopt.__all__) <= set(dir(energyopt))
    for name in energyopt.__all__:
        assert getattr(energyopt, name) is not None
    assert energyopt.__version__ and energyopt.Status.OPTIMAL.has_plan
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        energyopt.nope  # noqa: B018


def test_facade_keeps_plan_and_sweep_the_functions():
    """Importing a submodule binds it on the package; plan and sweep must stay the functions."""
    out = _python(
        "import energyopt\n"
        "energyopt.sweep\n"  # imports energyopt.sweep, which imports energyopt.plan
        "import energyopt.report, energyopt.plan\n"
        "print(callable(energyopt.plan), callable(energyopt.sweep), energyopt.plan.__module__)\n"
    )
    assert out.split() == ["True", "True", "energyopt.plan"]
