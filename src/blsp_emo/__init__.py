"""blsp-emo: empathetic speech-language models by the BLSP-Emo method.

Whisper encoder -> modality adapter -> chat LLM, trained by semantic alignment (stage 1) and
emotion alignment (stage 2). See README.md for the commands.
"""

__version__ = "0.1.0"
