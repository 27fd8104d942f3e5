"""Serving: one batching model session (engine) behind a terminal chat, an OpenAI-compatible API and a web page.

Modules: ``limits`` (every serving limit), ``protocol`` (request parsing), ``engine`` (queue + batching
worker), ``speech`` (spoken replies), ``api`` (FastAPI app), ``server`` (uvicorn), ``chat_cli`` and
``commands`` (the CLI).
"""
