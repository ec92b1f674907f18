"""Access statistics: per-day read counts of each image (`days`), their objects in the archive (`log`), and the recorder a serving worker feeds (`recorder`)."""
