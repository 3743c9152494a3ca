"""pyproject.toml and environment.yml list the same dependencies (names and lower bounds).

The comparison is generic: every requirement in [project.dependencies] and in every extra must have
a conda counterpart and vice versa. Only the few names that differ between PyPI and conda are listed
here, in PYPI_TO_CONDA, EXTRA_PACKAGES and CONDA_ONLY.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

# PyPI name -> conda name, where they differ.
PYPI_TO_CONDA = {
    "duckdb": "python-duckdb",
    "redis": "redis-py",  # conda-forge's "redis" is the server
    "cudf-cu12": "cudf",
    "dask-cudf-cu12": "dask-cudf",
}
# PyPI extras that pull in packages conda lists on their own: (package, extra) -> PyPI names.
EXTRA_PACKAGES = {("dlt", "duckdb"): ("duckdb",)}
# Conda entries with no PyPI requirement behind them.
CONDA_ONLY = {"python", "pip", "cuda-version", "postgresql"}

CONDA_SPEC = re.compile(r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_.-]+)\s*(?P<spec>[^#]*)$")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def _lower_bound(spec: SpecifierSet | str) -> Version | None:
    specifiers = SpecifierSet(spec.replace(" ", "")) if isinstance(spec, str) else spec
    bounds = [Version(s.version) for s in specifiers if s.operator in (">=", "==", "~=")]
    return max(bounds) if bounds else None


def pypi_as_conda(project: dict) -> dict[str, Version | None]:
    """Every PyPI requirement (core and all extras) under its conda name, with its lower bound."""
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    wanted: dict[str, Version | None] = {}

    def add(pypi_name: str, bound: Version | None) -> None:
        name = canonicalize_name(pypi_name)
        conda = PYPI_TO_CONDA.get(name, name)
        previous = wanted.get(conda)
        wanted[conda] = max((b for b in (previous, bound) if b is not None), default=None)

    for line in requirements:
        req = Requirement(line)
        add(req.name, _lower_bound(req.specifier))
        for extra in req.extras:
            for pulled in EXTRA_PACKAGES.get((canonicalize_name(req.name), extra), ()):
                add(pulled, None)
    return wanted


def conda_entries(environment: dict) -> dict[str, str]:
    """Conda package name -> its version spec; entries of the pip: section count under their PyPI name."""
    entries: dict[str, str] = {}
    for item in environment["dependencies"]:
        if isinstance(item, dict):
            for line in item.get("pip", []):
                if not line.startswith("-"):
                    req = Requirement(line)
                    name = canonicalize_name(req.name)
                    entries[PYPI_TO_CONDA.get(name, name)] = str(req.specifier)
            continue
        match = CONDA_SPEC.match(str(item).strip())
        assert match, f"environment.yml: cannot read the entry {item!r}"
        entries[canonicalize_name(match["name"])] = match["spec"].strip()
    return entries


def name_differences(project: dict, environment: dict) -> list[str]:
    wanted = pypi_as_conda(project)
    listed = {name for name in conda_entries(environment) if name not in CONDA_ONLY}
    problems = []
    if only_pyproject := sorted(set(wanted) - listed):
        problems.append(f"in pyproject.toml but not environment.yml (conda names): {', '.join(only_pyproject)}")
    if only_conda := sorted(listed - set(wanted)):
        problems.append(f"in environment.yml but not pyproject.toml: {', '.join(only_conda)}")
    return problems


def bound_differences(project: dict, environment: dict) -> list[str]:
    listed = conda_entries(environment)
    differ = []
    for name, bound in sorted(pypi_as_conda(project).items()):
        if bound is None or name not in listed:
            continue
        if (_lower_bound(listed[name]) if listed[name] else None) != bound:
            differ.append(f"{name}: pyproject >={bound}, environment.yml {listed[name] or '(none)'}")
    return differ


def test_same_packages_in_both() -> None:
    problems = name_differences(_pyproject()["project"], _environment())
    assert not problems, (
        "; ".join(problems) + ". Add the package to the other file; if conda names it differently, "
        "add a row to PYPI_TO_CONDA in tests/test_packaging.py."
    )


def test_same_lower_bounds_in_both() -> None:
    differ = bound_differences(_pyproject()["project"], _environment())
    assert not differ, "lower bounds differ: " + "; ".join(differ)


def test_python_version_is_the_same_and_at_least_3_11() -> None:
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    conda_python = conda_entries(_environment()).get("python")
    assert conda_python, "environment.yml must pin python (e.g. 'python >=3.11')"
    assert _lower_bound(requires) == _lower_bound(conda_python)
    assert _lower_bound(requires) >= Version("3.11")


def test_differences_are_named() -> None:
    """The comparison itself, on small made-up files: renames, extras, conda-only entries, bounds."""
    project = {
        "dependencies": ["dlt[duckdb]>=1.0", "duckdb>=1.1", "newlib>=2"],
        "optional-dependencies": {"postgres": ["psycopg[binary]>=3.2"], "gpu": ["Dask_Cudf-CU12>=24.8"],
                                  "redis": ["redis>=5"]},
    }
    environment = {"dependencies": [
        "python >=3.11", "pip", "cuda-version >=12,<13", "dlt >=1.0", "conda-forge::python-duckdb>=1.1",
        "psycopg >=3.2", "dask-cudf >=24.08", "redis-py >=4", "stray", {"pip": ["-e .", "pipthing>=1"]},
    ]}
    assert name_differences(project, environment) == [
        "in pyproject.toml but not environment.yml (conda names): newlib",
        "in environment.yml but not pyproject.toml: pipthing, stray",
    ]
    assert bound_differences(project, environment) == ["redis-py: pyproject >=5, environment.yml >=4"]
