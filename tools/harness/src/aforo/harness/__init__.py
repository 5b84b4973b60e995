"""The integrator's local test harness: a receiver that verifies what it gets and a page on :3001."""
