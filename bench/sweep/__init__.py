"""Many jobs: ``bench suite`` (sequential or as a job graph on submitit/SLURM/Ray) and ``bench curve``
(budget curves). Sits above run/ and report/; only the CLI sits above it."""
