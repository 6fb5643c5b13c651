"""The `naaice` console script: mounts each component's sub-commands and runs the demo."""
