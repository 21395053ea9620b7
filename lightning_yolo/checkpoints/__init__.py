"""Checkpoints and run folders: reading and writing checkpoint files (``files``), Lightning's CheckpointIO
(``io``), the last/best policy (``callbacks``) and where runs live and resume from (``runs``).

Nothing is imported here, so ``files`` (torch only) stays usable without Lightning.
"""
