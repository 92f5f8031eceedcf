"""The baseline methods, one file per method key; `dsr.registry.METHODS` registers them."""
