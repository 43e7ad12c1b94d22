"""The functional core: pure functions over plain data (no I/O, no clock reads, no globals)."""
