"""OrderFlow services: four choreographed services that share a runtime and an event catalog, never each other."""
