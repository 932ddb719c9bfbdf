"""Small shared helpers: errors, checkpoint io, logging, devices."""
