"""Few-shot LoRA fine-tuning with the transformers Trainer (METHOD §2.2).

Labels cover only the response (`Title"` + EOS); the prompt is masked with -100. The
Trainer evaluates the validation loss every epoch, keeps the best epoch, stops early,
checkpoints every epoch (a crashed run resumes from the last checkpoint) and the adapter
is saved atomically with its config and a content hash.

    >>> info = finetune_lora(model_dir, builder, train_df, valid_df, cfg.lora, cfg.finetune,
    ...                      "runs/x/teacher/adapter", work_dir, "cpu")   # doctest: +SKIP
    >>> info["adapter_hash"][:8], info["best_epoch"]                       # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.io import file_sha256, read_json, write_json
from teacher.config import FinetuneConfig, LoraSettings
from teacher.model import load_causal_lm, load_tokenizer
from teacher.prompts import PromptBuilder

log = logging.getLogger(__name__)

ADAPTER_META = "adapter_meta.json"


def seeded_sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most `n` rows, chosen with `seed`, in their original order (all rows when n is None)."""
    if n is None or n >= len(frame):
        return frame
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[rows]


def encode_pair(tokenizer, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """input_ids = prompt + response + EOS, labels = -100 on the prompt; the prompt is cut from the left."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    response_ids = response_ids[: max_length // 2]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) + len(response_ids) - max_length):]
    ids = prompt_ids + response_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt_ids) + response_ids}


def encode_frame(tokenizer, builder: PromptBuilder, frame: pd.DataFrame, max_length: int) -> list[dict]:
    return [encode_pair(tokenizer, p, r, max_length) for p, r in zip(builder.prompts(frame), builder.responses(frame))]


def adapter_hash(adapter_dir: str | Path) -> str:
    """sha256 over the adapter's config and weights."""
    adapter_dir = Path(adapter_dir)
    weights = sorted(adapter_dir.glob("adapter_model.*"))
    return file_sha256(adapter_dir / "adapter_config.json", *weights)


def read_adapter_meta(adapter_dir: str | Path) -> dict | None:
    path = Path(adapter_dir) / ADAPTER_META
    return read_json(path) if path.exists() else None


def use_bf16(setting: str, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return setting == "on"


def version_args(training_args_cls, warmup_ratio: float) -> dict:
    """Arguments whose name changed across transformers versions (5.19 here, 5.17 on the GPU box)."""
    import inspect

    names = inspect.signature(training_args_cls).parameters
    out: dict = {"warmup_ratio": warmup_ratio} if "warmup_ratio" in names else {"warmup_steps": warmup_ratio}
    if "train_sampling_strategy" in names:
        out["train_sampling_strategy"] = "group_by_length"
    elif "group_by_length" in names:
        out["group_by_length"] = True
    return out


def epoch_losses(log_history: list[dict]) -> list[dict]:
    return [{"epoch": round(float(h["epoch"]), 3), "eval_loss": float(h["eval_loss"])} for h in log_history if "eval_loss" in h]


def finetune_lora(
    model_dir: str | Path,
    builder: PromptBuilder,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    lora: LoraSettings,
    cfg: FinetuneConfig,
    adapter_dir: str | Path,
    work_dir: str | Path,
    device: torch.device,
    extra_meta: dict | None = None,
) -> dict:
    """Train a LoRA adapter on `train` (already sampled), select the epoch on `valid`; returns the meta dict."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer, TrainingArguments

    adapter_dir, work_dir = Path(adapter_dir), Path(work_dir)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "right"  # training positions then match generation's mask-derived positions
    train_set = encode_frame(tokenizer, builder, train, cfg.max_length)
    valid_set = encode_frame(tokenizer, builder, valid, cfg.max_length)
    model = load_causal_lm(model_dir, "cpu", torch.float32)
    model.config.use_cache = False
    peft_config = LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules))
    torch.manual_seed(cfg.seed)  # LoRA's A matrices are drawn here, before the Trainer seeds anything:
    model = get_peft_model(model, peft_config)  # without it the adapter depends on the process's RNG history
    per_epoch = -(-len(train_set) // (cfg.batch_size * cfg.grad_accum))
    by_steps = cfg.max_steps is not None
    strategy = {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": cfg.max_steps,
                "save_steps": cfg.max_steps} if by_steps else {"eval_strategy": "epoch", "save_strategy": "epoch"}
    args = TrainingArguments(
        output_dir=str(work_dir / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_total_limit=2,
        logging_steps=max(1, per_epoch // 4),
        report_to=[],
        bf16=use_bf16(cfg.bf16, device),
        use_cpu=device.type == "cpu",
        seed=cfg.seed,
        remove_unused_columns=False,
        save_only_model=False,
        **strategy,
        **version_args(TrainingArguments, cfg.warmup_ratio),
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100,
                                      pad_to_multiple_of=8 if device.type == "cuda" else None)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=valid_set, data_collator=collator,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)])
    resume = any((work_dir / "checkpoints").glob("checkpoint-*"))
    if resume:
        log.info("resuming fine-tuning from the last checkpoint in %s", work_dir / "checkpoints")
    n_tokens = sum(len(x["input_ids"]) for x in train_set)
    log.info("fine-tuning LoRA r=%d on %d samples (%d tokens), %d valid, up to %d epochs on %s",
             lora.r, len(train_set), n_tokens, len(valid_set), cfg.epochs, device)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if resume else None)
    seconds = time.perf_counter() - start
    state = trainer.state
    epochs_run = float(state.epoch or 0.0)
    meta = {
        "base_model": str(model_dir),
        "n_train": len(train_set),
        "n_valid": len(valid_set),
        "epochs_run": round(epochs_run, 3),
        "best_eval_loss": state.best_metric,
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
        "eval_losses": epoch_losses(state.log_history),
        "train_seconds": round(seconds, 2),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_tokens_per_second": round(n_tokens * epochs_run / seconds, 1) if seconds > 0 else None,
        "bf16": args.bf16,
        **(extra_meta or {}),
    }
    save_adapter(trainer.model, adapter_dir, meta)
    shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)  # the adapter is the result; checkpoints were for resuming
    log.info("fine-tuned in %.1fs (%.1f samples/s); best eval loss %s", seconds,
             meta["train_samples_per_second"] or 0.0, meta["best_eval_loss"])
    return read_adapter_meta(adapter_dir)


def save_adapter(model, adapter_dir: Path, meta: dict) -> None:
    """Save adapter weights + config + meta (with the content hash) into a temp folder, then rename."""
    adapter_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{adapter_dir.name}.", dir=adapter_dir.parent))
    try:
        model.save_pretrained(tmp)
        config = read_json(tmp / "adapter_config.json")  # peft writes target_modules from a set: its order
        if isinstance(config.get("target_modules"), list):  # changes with PYTHONHASHSEED, and so would the hash
            write_json({**config, "target_modules": sorted(config["target_modules"])}, tmp / "adapter_config.json")
        write_json({**meta, "adapter_hash": adapter_hash(tmp)}, tmp / ADAPTER_META)
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        os.replace(tmp, adapter_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
