"""Real SBA Paycheck Protection Program FOIA files as PPP-2020 deliveries, and how much of
the SBA's published figures they cover."""
