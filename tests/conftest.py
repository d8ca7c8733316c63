import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A tiny random causal LM + ChatML tokenizer saved as an HF folder (built once per session)."""
    from huatuo_o1.testing.tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def tiny_verifier_dir(tmp_path_factory):
    """A tiny random 2-label sequence classifier with its own (different) tokenizer."""
    from huatuo_o1.testing.tiny_models import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_verifier"))


@pytest.fixture(scope="session")
def default_model_dir():
    """The embedded default model converted to an HF folder (once; cached in the ignored models/)."""
    from huatuo_o1.models import DEFAULT_MODEL_DIR, prepare_default_model
    from tests.helpers import REPO

    return prepare_default_model(REPO / DEFAULT_MODEL_DIR)
