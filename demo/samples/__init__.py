"""Demo images (drawn by make_images.py) that the seed_demo command loads."""
