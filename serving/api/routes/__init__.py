"""One router per resource: score, feedback (and labels), review (alerts and
decisions), model, health."""
