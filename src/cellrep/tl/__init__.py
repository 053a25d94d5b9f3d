"""cellrep.tl."""
