"""What is asked and how answers read: the procedural task suite (`suite`), its trace grammar
(`traces`: parse, solve, canonical and thinned traces) and the natural-language prompt sets (`prompts`)."""
