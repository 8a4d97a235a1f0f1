"""Reading results: the leaderboard, its statistics, the pretraining gains and claims, plots, costs,
``bench reproduce``. Sits above run/ (it reads the result store)."""
