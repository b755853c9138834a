"""Files and folders: atomic writes, output folders and their inventory, provenance, model cards, Hub."""
