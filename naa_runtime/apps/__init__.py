"""Host applications that run on NAAs through `naa_runtime.client`: POET surrogate training."""
