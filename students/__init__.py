"""antidistill.students: the attacker's side of the bench, in rooms (each depends only on those above it).

- `cache`      the cache folder and build-once folders: `cache_root`, `config_hash`, `build_once`
- `batching`   texts and records to padded tensors: `encode_prompts`, `record_features`, `Collator`
- `tasks/`     the procedural task suite (`suite`), its trace grammar (`traces`), prompt sources (`prompts`)
- `models/`    presets, saved folders, the project tokenizer, batched sampling (`sampling.generate_batch`),
               the demo teacher (`teacher`), SmolLM2 (`smollm2`), and `loader.load_model` above them all
- `corpus`     the corpus format: `read_corpus`, `read_manifest`, `write_records`
- `training/`  distillation: `spec.TrainingSpec`, `lora`, `trainer.DistillTrainer`, `distill.train_student`
- `protect/`   a protection prepared (`prepare`, `proxy`, `doge`) and sampled into a corpus
               (`sample`), run whole by `generate.generate_corpus`
- `attacks/`   what a distiller does to the corpus, the student and its decoding

May import `antidistill.watermark`, never `antidistill.eval`.
"""
