"""Adapters: the only modules that touch kubernetes_asyncio, inotify and sockets."""
