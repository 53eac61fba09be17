"""One router per resource: score, labels, model, health."""
