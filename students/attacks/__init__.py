"""The attacker's menu: what a distiller does to the collected outputs and to its student.

One spec string per attack (`spec.py`), applied where it acts (`apply.py`): on the corpus
(`corpus.py`, `reweight.py`), on the student's weights (continued fine-tuning) or on its decoding
when the auditor queries it (`neutralize.py`, sampling settings). `edits.py` holds the random token
edits of single texts that the detectability evaluation uses.
"""
from .apply import (apply_corpus_attack, apply_student_attack, attack_corpus_folder, by_stage, clean_records,
                    decoding_settings, write_corpus)
from .edits import ATTACKS, edit_sequences
from .spec import STAGES, Attack, describe, known_attacks, parse_attack, parse_attacks

__all__ = ["ATTACKS", "STAGES", "Attack", "apply_corpus_attack", "apply_student_attack", "attack_corpus_folder",
           "by_stage", "clean_records",
           "decoding_settings", "describe", "edit_sequences", "known_attacks", "parse_attack", "parse_attacks",
           "write_corpus"]
