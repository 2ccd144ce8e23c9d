"""antidistill.students: the attacker's side of the bench.

- `tasks`      procedural task suite (add, mul, sort, count): `make_split`, `grade`, `accuracy_by_skill`
- `tokenizer`  the project's byte-level BPE: `project_tokenizer`, `tokenizer_fingerprint`
- `models`     presets (`tiny`, `mini`, `small`, `medium`) and `load_model(name_or_path)`
- `teacher`    the demo teacher, trained on first use and cached: `demo_teacher`, `teacher_card`,
               `grade_model`
- `sampling`   batched generation under a LogitsProcessor: `generate_batch`, `encode_prompts`
- `corpus`     resumable protected corpora: `generate_corpus`, `read_corpus`
- `distill`    SFT / logit-KD, full / LoRA, mixtures, via transformers.Trainer: `train_student`

May import `antidistill.watermark`, never `antidistill.eval`.
"""
