"""A live interpreter for LiveKit rooms: ears (STT) → brain (LLM + TTS) → mouth (playback)."""
