"""The browser viewer behind viewer.py: pages, tiles rendered by the models at screen
resolution, PSNRs and saved views. Sits above `inference`, beside the scripts."""
