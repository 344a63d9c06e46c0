"""LightningDataModules, one per dataset."""
