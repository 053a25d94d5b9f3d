"""cellrep.model."""
