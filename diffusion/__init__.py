"""Diffusion and flow matching (sciml.diffusion): FLEX, ECI and PCFM samplers live here."""

__all__: list[str] = []
