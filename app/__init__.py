"""besponsa-cds: the inotuzumab ozogamicin (BESPONSA) dose-modification CDS Hooks service."""

__version__ = "0.1.0"
