"""The Binder set-up stays in step with the package: same dependencies as pyproject.toml, a Python
that pyproject allows, and a postBuild that caches the weights of every model the notebooks load."""
import json
import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _by_name(lines) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs}


def _binder_requirements() -> dict[str, Requirement]:
    lines = [line.split("#", 1)[0].strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    return _by_name(line for line in lines if line and not line.startswith("-"))


def _postbuild_models() -> list[str]:
    match = re.search(r'^MODELS="([^"]*)"', (BINDER / "postBuild").read_text(), re.M)
    assert match, 'postBuild declares the models it fetches as MODELS="name name ..."'
    return match.group(1).split()


def _notebook_models() -> set[str]:
    """Torchvision models the notebooks load: load_model("name") calls, and names listed for a loop."""
    import torchvision

    known = set(torchvision.models.list_models(module=torchvision.models))
    names = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            names |= set(re.findall(r"""load_model\(\s*["']([\w.]+)["']""", source)) - {"shapes"}
            if "load_model" in source:
                names |= set(re.findall(r"""["']([a-z][\w]*)["']""", source)) & known
    return names


def test_binder_names_every_dependency_with_the_same_bounds():
    binder = _binder_requirements()
    needed = _by_name(_pyproject()["dependencies"])
    missing = sorted(set(needed) - set(binder))
    assert not missing, f"binder/requirements.txt lacks {missing} (pyproject.toml [project].dependencies)"
    drift = {n: (str(needed[n].specifier), str(binder[n].specifier)) for n in needed
             if needed[n].specifier != binder[n].specifier}
    assert not drift, f"version bounds differ (pyproject, binder): {drift}"


def test_binder_adds_only_the_lab_extra():
    project = _pyproject()
    lab = _by_name(project["optional-dependencies"]["lab"])
    binder = _binder_requirements()
    assert set(lab) <= set(binder), f"binder lacks the lab extra's {sorted(set(lab) - set(binder))}"
    extra = sorted(set(binder) - set(lab) - set(_by_name(project["dependencies"])))
    assert not extra, f"binder installs {extra}, which pyproject.toml does not name; add them there first"


def test_binder_python_is_one_pyproject_allows():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    allowed = Requirement(f"python{_pyproject()['requires-python']}").specifier
    assert Version(runtime.removeprefix("python-")) in allowed


def test_postbuild_installs_the_package_and_is_executable():
    text = (BINDER / "postBuild").read_text()
    assert text.startswith("#!/bin/bash") and "set -euo pipefail" in text
    assert re.search(r"pip install .*-e \.$", text, re.M), "postBuild installs this checkout"
    assert os.access(BINDER / "postBuild", os.X_OK), "repo2docker runs postBuild only when it is executable"


def test_postbuild_fetches_every_model_the_notebooks_load():
    fetched = _postbuild_models()
    used = _notebook_models()
    assert {"alexnet", "resnet18", "resnet101", "densenet121"} <= used, "the first-layer-filters notebook"
    assert not used - set(fetched), f"postBuild does not fetch {sorted(used - set(fetched))}"


@pytest.mark.parametrize("name", _postbuild_models())
def test_postbuild_names_real_torchvision_weights(name):
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    assert weights.url.startswith("https://download.pytorch.org/models/")
