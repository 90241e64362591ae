"""Call scripts: short coroutines over the call interface, one per thing a caller can do."""
