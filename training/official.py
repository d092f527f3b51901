"""Where the official trainers differ from one another, so that a run of train_liif.py takes
the steps of its model's own official trainer (LIIF's train_liif.py, LTE's, LMF's and SRNO's
train.py, seeded with the same seed; scripts/compare_official_training.py shows it). Each
difference changes when the random streams are drawn, hence every batch after it.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class OfficialTrainer:
    """persistent_workers: the DataLoaders keep their worker processes across epochs (their
        random streams continue instead of being re-seeded from the main process each epoch;
        with workers, a resumed run then cannot continue those streams exactly).
    validates_after_epoch_1: validation after epoch 1 whatever epoch_val says."""
    persistent_workers: bool = False
    validates_after_epoch_1: bool = False


LIIF_TRAINER = OfficialTrainer()  # LIIF's, which LTE and LMF kept
TRAINERS = {
    # SRNO's train.py: `DataLoader(..., persistent_workers=True)` and
    # `if (epoch == 1) or (epoch % epoch_val == 0)`.
    'sronet': OfficialTrainer(persistent_workers=True, validates_after_epoch_1=True),
}


def official_trainer(model_name: str) -> OfficialTrainer:
    """The official trainer of a config's model (by its registered name)."""
    return TRAINERS.get(model_name, LIIF_TRAINER)
