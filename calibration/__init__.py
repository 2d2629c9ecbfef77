"""segrt.calibration."""
