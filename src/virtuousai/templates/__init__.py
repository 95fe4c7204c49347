"""Templates: reusable blueprints of an action run or an automation, with immutable versions and snapshots."""
