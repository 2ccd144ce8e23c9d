"""DOGe (arXiv 2505.19504): a defended teacher whose lm_head is fine-tuned against a proxy student.

Only the output layer is trained, on the teacher's own SFT data, with
L_SFT - beta * KL(softmax(z_T / 2) || softmax(z_P / 2)) against a frozen proxy: the teacher keeps
its answers but spreads its next-token distribution where the proxy would not, which is what a
student distilled on its (sampled or logit) outputs must then imitate. Reported: teacher +1.5,
student -12.9 points on GSM8K. The defended teacher is built once and cached (students/doge.py),
then sampled plainly, so there is no processor and no detector.
"""
from __future__ import annotations

from .poe import PROXY
from .spec import Param, Protection, register


@register
class DOGe(Protection):
    scheme = "doge"
    params = (Param("beta", float, 0.1, lambda v: v >= 0.0, "beta >= 0"), PROXY)
    acts_on = "teacher"
