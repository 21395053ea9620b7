"""``tune``: YOLOv5's hyperparameter evolution on Ray Tune.

- :mod:`~lightning_yolo.tune.space`: the searched settings, with YOLOv5's mutation gains and bounds;
- :mod:`~lightning_yolo.tune.evolve`: YOLOv5's genetic algorithm (parent selection, mutation, limits), no Ray;
- :mod:`~lightning_yolo.tune.searcher`: that algorithm as a Ray Tune searcher whose state survives a restart;
- :mod:`~lightning_yolo.tune.trial`: one trial, an ordinary fit reporting fitness to Ray Tune every epoch;
- :mod:`~lightning_yolo.tune.results`: ``evolve.csv`` and the best hyperparameters as a config fragment;
- :mod:`~lightning_yolo.tune.plot`: ``evolve.png``;
- :mod:`~lightning_yolo.tune.options`: the ``--tune.*`` settings and the fit settings they travel with;
- :mod:`~lightning_yolo.tune.engine`: Ray (local or a cluster), the Tuner, restore after a crash;
- :mod:`~lightning_yolo.tune.run`: the command line (``python -m lightning_yolo tune``).

Ray and Optuna are the optional ``tune`` extra; nothing here imports them until a tune runs.
"""
