"""HTTP layer: error envelope, dependencies, one router per resource."""
