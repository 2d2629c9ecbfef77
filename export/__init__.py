"""segrt.export."""
