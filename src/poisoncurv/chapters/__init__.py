"""Per-chapter experiment drivers: each module maps a profile to sizes and runs the chapter's sweeps."""
