"""The shared harness every method runs in: from a request to a RunConfig (`resolve`), checks
before the first step (`preflight`), training (`train`, `optim`, `checkpoint`), evaluation and
its metric objects (`evaluate`, `metrics`, `cost`, `calibration`), ANN-to-SNN conversion
(`convert`) and the run record (`record`, `results`, `provenance`). The CLI is `dsr.run`."""
