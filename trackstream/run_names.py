"""Names for runs created without one, as MLflow's stores give them (``<adjective>-<noun>-<n>``);
used by the gateway's ``runs/create`` and the ``trackstream://`` mlflow plugin alike."""

from __future__ import annotations

import random

_ADJECTIVES = ("bold", "calm", "eager", "gentle", "keen", "lucky", "merry", "quiet", "swift", "wise")
_NOUNS = ("otter", "heron", "lynx", "panda", "falcon", "whale", "fox", "crane", "bison", "koala")


def generated_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"
