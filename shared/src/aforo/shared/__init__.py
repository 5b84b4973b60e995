"""aforo-notify."""
