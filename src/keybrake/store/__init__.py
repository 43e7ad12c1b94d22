"""Storage: one interface (`base.Store`), one migration history, an engine per database."""

from keybrake.store.base import Store
from keybrake.store.open import open_store

__all__ = ["Store", "open_store"]
