"""Distilling students: the run's settings (`spec`), LoRA (`lora`), the losses and Trainer (`trainer`)
and `distill.train_student`, which reads the corpora, binds the output folder and trains."""
