"""Traffic detectors. Each maps a label-free log (schema.require_unlabelled) to one score per
account, higher = more like a distillation campaign; thresholds come from calibrate.py."""
