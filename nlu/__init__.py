"""Intent and sentiment models: training, evaluation and inference.

Models never come from a hub at run time unless asked: ``HF_HUB_OFFLINE``
defaults to 1 here (set it to 0 to let transformers download base models).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
