"""Training: the Trainer, losses, optimisers, augmentation, tricks, loggers, folds."""
