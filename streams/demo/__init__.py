"""The demo: generated wallets through the real topics and worker, timed per stage.

pipeline.py   publish each stage while a worker consumes it; time it to its last stored row
summary.py    what the run left in the store, summarised
"""

from streams.demo.pipeline import StageTiming, demo_settings, run_demo

__all__ = ["StageTiming", "demo_settings", "run_demo"]
