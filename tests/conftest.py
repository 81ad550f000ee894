"""Shared test set-up: never touch the network, never read the user's torch cache, fixed threads."""
import os
import tempfile

# Before anything imports torch: an empty hub cache of our own, and no download attempts.
_TORCH_HOME = tempfile.mkdtemp(prefix="cnnviz-torch-home-")
os.environ["TORCH_HOME"] = _TORCH_HOME
os.environ["CNNVIZ_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def torch_home():
    """The temporary TORCH_HOME every test runs under (hub cache in <torch_home>/hub/checkpoints)."""
    return _TORCH_HOME


@pytest.fixture(scope="session")
def shapes_model():
    import cnnviz_widgets as cw
    return cw.load_model("shapes", device="cpu")


@pytest.fixture(scope="session")
def resnet18_random():
    import cnnviz_widgets as cw
    return cw.load_model("resnet18", weights=None, device="cpu")


@pytest.fixture
def no_hooks_left():
    """Call with a module after the code under test: asserts no forward/backward hook remains on any submodule."""
    def check(module):
        module = getattr(module, "module", module)
        for name, m in module.named_modules():
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
                assert not getattr(m, attr, {}), f"hook left in {name or 'model'}.{attr}"
    return check
