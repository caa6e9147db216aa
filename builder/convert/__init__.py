"""Existing guests: the plans that switch IDE/e1000 guests to virtio (pure) and the steps
that carry them out."""
