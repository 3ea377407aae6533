"""The node agent's pure domain: claims, checkpoint state, CDI building, health lists.

Nothing here does I/O or imports asyncio, kubernetes_asyncio, grpclib or the
generated protobuf code; adapters convert to and from these types.
"""
