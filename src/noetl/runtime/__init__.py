"""noetl.runtime"""
