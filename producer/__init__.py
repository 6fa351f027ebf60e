"""The SDK's writing side: the fluent API and the client, metric batching, the crash-safe spool
and its sync, artifact upload -> verify -> commit. Users import it as ``import trackstream as ts``.
"""
