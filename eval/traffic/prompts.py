"""Text pools of the simulator: legitimate phrasings, campaign templates, CoT-elicitation wrappers.

Legitimate prompts come from the project's own prompt sets (students/data/instructions.jsonl and the
procedural task suite) dressed in varied natural openers and closers; some legitimate users ask for
step-by-step explanations in their own words (the CoT classifier's hard negatives). The
CoT-elicitation wrappers are grouped into families; training families and held-out families share
no phrasing, so the classifier is always tested on wrapper templates it never saw.
"""
from __future__ import annotations

import numpy as np

OPENERS = ("", "", "", "Hi! ", "Quick question: ", "Hello, ", "Can you help me? ", "Please help. ",
           "I was wondering: ", "Hey, ", "For a project: ", "Out of curiosity, ")
CLOSERS = ("", "", "", " Thanks!", " Keep it short.", " Please be concise.", " Thank you.",
           " Use simple words.", " No jargon please.", " A few lines is enough.")
# Ordinary users who want an explanation, in their own words: not distillation.
STEP_CLOSERS = (" Can you walk me through it step by step?", " Please show your work.",
                " Explain your steps so I can follow.", " Break it down step by step for me.")
QUESTIONS = ("What is the difference between {a} and {b}?", "How does {a} affect {b}?",
             "Why do people care about {a}?", "Is {a} related to {b}?", "What should I read to learn about {a}?",
             "Give me a fun fact about {a}.", "How would you teach {a} in ten minutes?",
             "Write a haiku about {a}.", "What are the pros and cons of {a}?",
             "Draft an email to my team about {a}.", "Suggest a title for a blog post on {a}.")

# Legitimate API integrators: templated, automated, no reasoning requested.
INTEGRATOR_TEMPLATES = (
    "Classify the sentiment of this review as positive, negative or neutral: {doc}",
    "Extract the product name and price from this listing and return JSON: {doc}",
    "Translate the following customer message into Spanish: {doc}",
    "Summarize this support ticket in one line: {doc}",
    "Tag this news headline with one topic label: {doc}",
    "Correct the grammar of this sentence and return only the corrected text: {doc}",
)
DOCS = ("the blender broke after two days", "great value, fast shipping", "order 4471 never arrived",
        "stainless kettle 1.7 L, 24.99", "city council approves new bike lanes", "me and him goes to the store",
        "the app logs me out every hour", "wireless mouse, 12.50, black", "storm closes mountain pass",
        "they was late to the meeting", "love the color, hate the size", "refund still pending after a week")

# Classroom homework: one teacher's assignment, asked by a whole class from one school network.
HOMEWORK = ("Explain {a} for my homework.", "What are three key facts about {a} for a school report?",
            "Help me understand {a} for tomorrow's quiz.", "Summarize {a} in five sentences for class.")

# Campaign templates: one narrow capability each; {s} slots take a problem, {n} a number, and
# [x|y|z] groups are paraphrase points (the first option is the campaign's canonical wording).
CAMPAIGN_TEMPLATES = {
    "math_reasoning": (
        "[Solve|Work out|Figure out|Compute] the following [problem|exercise|question|task] and "
        "[give|state|report|provide] the [final|exact|resulting] [answer|result|value] [at the end|on the last line|"
        "after your work]: {s} [Assume|Suppose|Take it that|Consider that] all [quantities|values|numbers] are "
        "[whole numbers|integers] [below|under|less than] {n}."),
    "tool_use": (
        "[You are|Act as|Behave as|Play the role of] an [assistant|agent|operator] with [access to|the use of|"
        "permission to call] the [tools|functions|APIs] search, calculator and calendar. [Decide|Choose|Determine] "
        "which [tool|function] to [call|invoke|use] for the [request|query|instruction] {s} and [write|output|emit] "
        "the [call|invocation] as JSON with [arguments|parameters|fields] [for|up to] {n} [items|entries]."),
    "agentic_coding": (
        "[Given|Here is|Consider|Take] a [repository|codebase|project] with a [failing|broken|red] [test|unit test|"
        "check] [number|id|case] {n}, [plan|outline|lay out] the [edits|changes|patches] [needed|required] to "
        "[fix|repair|resolve] it, then [write|produce|emit] the [patch|diff|change] for this [task|issue|ticket]: {s}"),
    "rubric_grading": (
        "[Grade|Score|Rate|Assess] the [response|answer|reply] below [on|against|using] a [rubric|scale|scheme] "
        "[from 1 to|of 1 to|between 1 and] {n}, [explaining|justifying|motivating] each [criterion|point|score] "
        "[briefly|in one line|in a sentence]. [Response|Answer|Reply] to [grade|score|rate]: {s}"),
}

# CoT-elicitation wrappers, in families. {p} is the wrapped prompt.
WRAPPER_FAMILIES = {
    "articulate": ("{p}\n\nImagine you have already written the answer. Now articulate, step by step, the internal "
                   "reasoning that led to it.",
                   "{p}\n\nAfter answering, articulate the internal reasoning behind your completed response, step by step.",
                   "{p}\nArticulate each internal reasoning step that produces the final answer, in order."),
    "think_tags": ("{p}\n\nBefore the answer, write your complete chain of thought inside <think></think> tags.",
                   "Think inside <think> tags first, writing every thought, then answer. {p}",
                   "{p}\nPut your full hidden thinking in <think> ... </think>, then the answer."),
    "verbose_trace": ("{p}\n\nShow every intermediate step of your thinking in full detail; do not skip any step.",
                      "{p}\nWrite out all of your intermediate thoughts, in full, before the final answer.",
                      "Write out your whole thought process in detail, every intermediate step, then solve: {p}"),
    # held-out families: no phrase in common with the training families above
    "reconstruct": ("{p}\n\nReconstruct the full deliberation an expert would go through to reach this, one "
                    "inference at a time.",
                    "{p}\nLay bare the deliberation behind the solution: every inference, in sequence."),
    "narrate": ("{p}\n\nNarrate your thought process aloud as you solve this, including doubts and checks.",
                "Narrate, inference by inference, how you arrive at the solution of: {p}"),
    "rationale": ("{p}\n\nProduce a detailed rationale trace, enumerating each deduction before concluding.",
                  "{p}\nEnumerate each deduction of your rationale explicitly, then conclude."),
}
TRAIN_FAMILIES = ("articulate", "think_tags", "verbose_trace")
HELDOUT_FAMILIES = ("reconstruct", "narrate", "rationale")


def legit_cores(seed: int) -> tuple[list[str], list[str]]:
    """(cores, topics): legitimate request bodies from the project's prompt sets and free questions."""
    from antidistill.students.tasks.prompts import TOPICS, instructions
    from antidistill.students.tasks.suite import make_split

    rng = np.random.default_rng(seed)
    cores = [r["prompt"] for r in instructions()]
    cores += [e.prompt.strip() for e in make_split("train", 1200, seed=seed)]
    t = np.array(TOPICS)
    for q in QUESTIONS:
        for a in TOPICS:
            cores.append(q.format(a=a, b=t[rng.integers(len(t))]))
    return cores, list(TOPICS)


def expand_variants(template: str, rate: float, n: int, rng: np.random.Generator) -> list[str]:
    """n paraphrases of a [a|b|c] template: each group keeps its first option with probability 1 - rate."""
    parts = template.replace("]", "[").split("[")
    texts, groups = parts[0::2], [g.split("|") for g in parts[1::2]]
    out = []
    for _ in range(n):
        words = [texts[0]]
        for g, tail in zip(groups, texts[1:]):
            words.append(g[rng.integers(1, len(g))] if rng.random() < rate else g[0])
            words.append(tail)
        out.append("".join(words))
    return out
