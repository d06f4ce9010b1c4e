"""Parameter presets: `demo` (the whole pipeline in minutes on 2 CPU cores) and `full` (METHOD defaults).

The demo preset keeps the real teacher (SmolLM2-135M, LoRA, generation, grounding) but on
a budget: 8 fine-tuning steps on 32 samples, generation for a seeded subset of 64 train
samples plus 32 valid and 32 test samples, and students for up to 80 epochs (early stopping
ends them first; see `demo_students`).
Every number is an ordinary config field, so the UI form or a JSON file can change it.

    >>> p = profile_parameters("demo")
    >>> p["teacher"].finetune.n_samples, [s.model for s in p["students"]]
    (32, ['sasrec', 'sasrec'])
"""
from __future__ import annotations

from student.config import DistillConfig, EmbeddingDistillConfig, StudentConfig
from student.config import TrainConfig as StudentTrain
from teacher.config import FinetuneConfig, GenerationConfig, ModelConfig, PromptConfig, TeacherConfig

PROFILES = ("demo", "full")


def demo_teacher(model: str | None = None) -> TeacherConfig:
    """Sized for ~30 GFLOP/s (2 busy CPU cores): SmolLM2 prefill dominates, so prompts keep the
    5 most recent titles, fine-tuning runs 8 steps of 4, and 64 train + 2 x 32 eval samples are generated."""
    return TeacherConfig(
        model=ModelConfig(name=model or "smollm2"),
        prompt=PromptConfig(max_history=5),
        finetune=FinetuneConfig(n_samples=32, n_valid=16, epochs=1, max_steps=8, batch_size=4),
        generation=GenerationConfig(num_beams=1, batch_size=16),
        max_samples=64,
        max_eval_samples=32,
    )


def demo_students() -> list[StudentConfig]:
    """SASRec with full DLLM2Rec (METHOD defaults) and with embedding distillation only; the
    pipeline adds the no-distillation baseline. A demo teacher ranks ~2% of the train samples.
    The epoch cap leaves early stopping room (best epochs 38-49; at a cap of 30 all three peaked
    at 27-30): a student that ends at the cap may still be rising, and the trainer warns about it."""
    train = StudentTrain(epochs=80, batch_size=256)
    return [StudentConfig(model="sasrec", distill=DistillConfig(enabled=True), train=train),
            StudentConfig(model="sasrec", distill=DistillConfig(enabled=True, lambda_d=0.0), train=train)]


FULL_LAMBDAS = (0.7, 0.3, 0.1, 0.0)  # METHOD default first; METHOD tunes lambda_d in {0.1 .. 1.0}
RANKING_ONLY_LAMBDA = 0.1  # the ranking loss without embedding distillation, at the light lambda_d


def full_distill_candidates() -> list[DistillConfig]:
    """DLLM2Rec at lambda_d 0.7 (METHOD default), 0.3, 0.1 and 0 (embedding distillation only), and
    the ranking loss alone at 0.1. The small values are there because a teacher much weaker than
    its students (SmolLM2-135M on ml-100k/Toys, docs/results.md) makes the ranking loss hurt at 0.7
    while a light one, or one half of the method, still helps. Ranking only is there because with
    the history masked, as the server ranks, it was the one variant that beat plain SASRec and DROS
    on Games (+14% and +9% test NDCG@20, picked on valid on every seed; on Toys DROS +8%, GRU4Rec +36%) while the
    embeddings cost them."""
    return ([DistillConfig(enabled=True, lambda_d=lam) for lam in FULL_LAMBDAS]
            + [DistillConfig(enabled=True, lambda_d=RANKING_ONLY_LAMBDA, embedding=EmbeddingDistillConfig(enabled=False))])


def full_students() -> list[StudentConfig]:
    """Per model, every `full_distill_candidates` variant; the pipeline adds the plain baseline and
    the report serves the best on **valid**, which is METHOD's "lambda_d tuned" done on validation."""
    return [StudentConfig(model=m, distill=d) for m in ("gru4rec", "caser", "sasrec") for d in full_distill_candidates()]


def profile_parameters(profile: str, model: str | None = None) -> dict:
    """`{"teacher": TeacherConfig, "students": [StudentConfig, ...]}` for a preset name."""
    if profile == "demo":
        return {"teacher": demo_teacher(model), "students": demo_students()}
    if profile == "full":
        teacher = TeacherConfig(model=ModelConfig(name=model)) if model else TeacherConfig()
        return {"teacher": teacher, "students": full_students()}
    raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
