"""leanbits: how many bits does this network really need?"""

__version__ = "0.1.0"

