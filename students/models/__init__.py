"""Models: presets, saved folders and devices, the project tokenizer, batched sampling, the demo
teacher, SmolLM2 from its GGUF, and `loader.load_model`, which resolves every model name."""
