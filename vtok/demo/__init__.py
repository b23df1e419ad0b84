"""The main job (`make demo`, `vtok demo`): post-train a tokenizer on this machine in minutes and show the result."""

from .run import MODELS, DemoResult, DemoSettings, run_demo

__all__ = ["MODELS", "DemoResult", "DemoSettings", "run_demo"]
