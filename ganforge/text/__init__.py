"""Text encoders behind one interface, chosen by a config's ``kind``.

``tiny``: :class:`TinyTransformerEncoder`, a small byte-level transformer trained with the image
model. ``minilm``: :class:`MiniLMEncoder`, frozen all-MiniLM-L6-v2 (optional extra
``ganforge[minilm]``; its packages are imported only when one is built).
"""

from ganforge.text.encoders import (
    TextEmbedding,
    TextEncoder,
    build_text_encoder,
    check_prompts,
)
from ganforge.text.minilm import MiniLMEncoder
from ganforge.text.tiny import TinyTransformerEncoder

__all__ = [
    "MiniLMEncoder",
    "TextEmbedding",
    "TextEncoder",
    "TinyTransformerEncoder",
    "build_text_encoder",
    "check_prompts",
]
