"""What the tests share: delivery and raw-layer factories, the independent KPI oracle, the
fault runner and the reliability log."""
