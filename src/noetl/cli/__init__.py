"""noetl.cli"""
