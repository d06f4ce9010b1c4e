"""The LLM teacher (BIGRec, METHOD.md §2): prompts, LoRA fine-tuning, generation, grounding.

Entry points (see docs/teacher.md):

    from teacher.config import TeacherConfig
    from teacher.run import run_teacher, finetune_step, generate_step, ground_step
    from teacher.estimate import estimate_teacher

`teacher/` never imports `student/`; it writes the contract of `pipeline/artifacts.py`.
"""
