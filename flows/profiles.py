"""Parameter presets: `demo` (the whole pipeline in minutes on 2 CPU cores) and `full` (METHOD defaults).

The demo preset keeps the real teacher (SmolLM2-135M, LoRA, generation, grounding) but on
a budget: a few dozen fine-tuning steps on 128 samples, generation for a seeded subset
of train samples plus a seeded subset of valid/test, and students for a few epochs.
Every number is an ordinary config field, so the UI form or a JSON file can change it.

    >>> p = profile_parameters("demo")
    >>> p["teacher"].finetune.n_samples, [s.model for s in p["students"]]
    (128, ['sasrec'])
"""
from __future__ import annotations

from student.config import DistillConfig, StudentConfig
from student.config import TrainConfig as StudentTrain
from teacher.config import FinetuneConfig, GenerationConfig, ModelConfig, TeacherConfig

PROFILES = ("demo", "full")


def demo_teacher(model: str | None = None) -> TeacherConfig:
    return TeacherConfig(
        model=ModelConfig(name=model or "smollm2"),
        finetune=FinetuneConfig(n_samples=128, n_valid=32, epochs=1, max_steps=32, batch_size=4),
        generation=GenerationConfig(num_beams=1, batch_size=32),
        max_samples=384,
        max_eval_samples=192,
    )


def demo_students() -> list[StudentConfig]:
    train = StudentTrain(epochs=30, patience=5, batch_size=256)
    return [StudentConfig(model="sasrec", distill=DistillConfig(enabled=True), train=train)]


def profile_parameters(profile: str, model: str | None = None) -> dict:
    """`{"teacher": TeacherConfig, "students": [StudentConfig, ...]}` for a preset name."""
    if profile == "demo":
        return {"teacher": demo_teacher(model), "students": demo_students()}
    if profile == "full":
        teacher = TeacherConfig(model=ModelConfig(name=model)) if model else TeacherConfig()
        return {"teacher": teacher, "students": [StudentConfig(model=m, distill=DistillConfig(enabled=True))
                                                 for m in ("gru4rec", "caser", "sasrec")]}
    raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
