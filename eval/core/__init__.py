"""The experiment core under `run` (natural included), `evidence` and `traffic`: typed configs
(`config`), the content-addressed store (`store`), jobs with one scheduler and stage timing (`jobs`)."""
