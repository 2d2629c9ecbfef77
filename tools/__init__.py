"""segrt.tools."""
