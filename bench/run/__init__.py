"""Running one job: validate, pretrain (cached, locked), evaluate, store the result; provenance,
tracking and ``bench perf``. Sits above features/ and protocols/."""
