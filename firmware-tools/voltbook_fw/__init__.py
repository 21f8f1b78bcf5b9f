"""Installer tooling (`voltbook-fw`).

Provision a concentrator identity, build its install bundle, commission buses, import infrared
handheld readings. The package lives in `firmware-tools/voltbook_fw`.
"""
