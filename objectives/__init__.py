"""Training objectives that run inside a trial: ``objectives/<name>.py`` defines ``objective(trial)``."""
