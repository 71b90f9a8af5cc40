"""IR -> C: memory plan, kernel parameters, generated sources."""
