"""Helpers for the scheduler tests: tiny notebooks, a schedule file, a config over a private var folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from sophia_lib.appdb import AppDb, open_app_db
from sophia_lib.config import SophiaConfig, load_config


def notebook(path: Path, *cells: str, parameters: str | None = None) -> Path:
    """A notebook with an optional cell tagged ``parameters`` first, then one code cell per string."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        code.append(cell)
    code += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.cells = code
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


class Project:
    """A folder with sophia.yaml, pipelines/schedule.yaml and notebooks/; ``config`` loads it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.schedule = root / "pipelines" / "schedule.yaml"
        (root / "sophia.yaml").write_text(yaml.safe_dump({
            "var_dir": "var",
            "scheduler": {"schedule": "pipelines/schedule.yaml", "max_parallel": 2, "timezone": "UTC"},
        }))

    def jobs(self, **jobs: dict) -> Path:
        self.schedule.parent.mkdir(parents=True, exist_ok=True)
        self.schedule.write_text(yaml.safe_dump({"jobs": jobs}, sort_keys=False))
        return self.schedule

    def notebook(self, name: str, *cells: str, parameters: str | None = None) -> str:
        """Writes notebooks/<name>.ipynb; returns the path as the schedule writes it."""
        notebook(self.root / "notebooks" / f"{name}.ipynb", *cells, parameters=parameters)
        return f"../notebooks/{name}.ipynb"

    @property
    def config(self) -> SophiaConfig:
        return load_config(self.root / "sophia.yaml")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def app_db(project: Project) -> Iterator[AppDb]:
    db = open_app_db(project.config)
    yield db
    db.close()
