"""The teacher's side of generation: a protection prepared (`prepare`: proxy students in `proxy`, the
DOGe-defended teacher in `doge`, the trace renderer), sampled into a corpus folder (`sample`), and
`generate.generate_corpus`, which runs the whole of it for a teacher name and a prompt source."""
