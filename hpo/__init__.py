"""runpod-hpo: hyperparameter optimization for GPU training on RunPod.

An Optuna study whose storage lives on a (RunPod network) volume; each trial
runs as a worker (a spot pod, or a local process) that appends its validation
loss to an event file; the controller reports it to the study and prunes bad
trials by stopping their workers at once.
"""

__version__ = "0.1.0"
