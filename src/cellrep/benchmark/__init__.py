"""cellrep.benchmark."""
