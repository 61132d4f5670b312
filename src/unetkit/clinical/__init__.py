"""Clinical use: calibration, temporal smoothing, sequences, video. Never imports `training`."""
