"""Landing: a source's delivery from the drop folder into the raw layer (home/raw), after
its snapshot, checksum, header and every row rule of extracts.md; refused deliveries and
quarantined rows never reach raw/."""
